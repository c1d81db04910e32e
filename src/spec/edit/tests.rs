use super::*;
use crate::spec::instance::InstanceFile;

/// A file the way an operator keeps it: comments everywhere, its own order and quoting.
const COMMENTED: &str = "\
# acme's shop — owned by the sales team (ticket OPS-1234)
tenant: acme
template: demo     # the demo app
version: \"1\"

# Custom domains: proven 2026-11-02.
domains:
  - shop.acme.test   # the main one
  # - old.acme.test  (retired)
plan: small
limits: {memory: 384m}   # raised for the sale
parameters:
  # what visitors see
  site_title: Acme     # keep short
  admin_email: ops@acme.test
  brand_color: '#336699'
state: running
# end of file
";

fn parse(src: &str) -> InstanceFile {
    serde_yaml::from_str(src).unwrap()
}

fn edited(change: impl FnOnce(&mut InstanceFile)) -> String {
    let old = parse(COMMENTED);
    let mut new = old.clone();
    change(&mut new);
    match rewrite(COMMENTED, &old, &new) {
        Written::InPlace(t) => {
            assert_eq!(
                serde_yaml::to_value(parse(&t)).unwrap(),
                serde_yaml::to_value(&new).unwrap()
            );
            t
        }
        Written::Whole(_, why) => panic!("written whole: {why}"),
    }
}

/// Lines of `a` not in `b`, and of `b` not in `a`.
fn diff(a: &str, b: &str) -> (Vec<String>, Vec<String>) {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let gone = la
        .iter()
        .filter(|l| !lb.contains(l))
        .map(|l| l.to_string())
        .collect();
    let new = lb
        .iter()
        .filter(|l| !la.contains(l))
        .map(|l| l.to_string())
        .collect();
    (gone, new)
}

#[test]
fn a_parameter_changed_changes_its_line_only_and_keeps_its_comment() {
    let t = edited(|f| {
        f.parameters
            .insert("site_title".into(), Value::String("Acme Sale".into()));
    });
    assert_eq!(
        diff(COMMENTED, &t),
        (
            vec!["  site_title: Acme     # keep short".into()],
            vec!["  site_title: Acme Sale  # keep short".into()]
        )
    );
}

#[test]
fn a_parameter_added_goes_at_the_end_of_its_map_and_one_dropped_leaves_no_line() {
    let t = edited(|f| {
        f.parameters
            .insert("tagline".into(), Value::String("Best shop: ever".into()));
        f.parameters.remove("admin_email");
    });
    let (gone, new) = diff(COMMENTED, &t);
    assert_eq!(gone, ["  admin_email: ops@acme.test"]);
    assert_eq!(new, ["  tagline: 'Best shop: ever'"]);
    let at = t.find("tagline").unwrap();
    assert!(
        at > t.find("brand_color").unwrap() && at < t.find("state:").unwrap(),
        "{t}"
    );
}

#[test]
fn the_state_a_version_and_a_new_key_are_edited_where_they_are() {
    let t = edited(|f| {
        f.state = crate::spec::instance::RunState::Suspended;
        f.version = Some("2".into());
        f.pinned = true;
    });
    let (gone, new) = diff(COMMENTED, &t);
    assert_eq!(gone, ["version: \"1\"", "state: running"]);
    assert_eq!(new, ["version: '2'", "state: suspended", "pinned: true"]);
    assert!(
        t.ends_with("state: suspended\npinned: true\n# end of file\n"),
        "added after the last key, the closing comment kept last: {t}"
    );
}

#[test]
fn a_list_replaced_keeps_the_comments_around_it_and_its_heads_comment() {
    let t = edited(|f| f.domains.push("www.acme.test".into()));
    assert!(t.starts_with("# acme's shop"), "{t}");
    assert!(
        t.contains("# Custom domains: proven 2026-11-02.\ndomains:\n"),
        "{t}"
    );
    assert!(t.contains("- www.acme.test"), "{t}");
    assert!(
        t.contains("limits: {memory: 384m}   # raised for the sale"),
        "{t}"
    );
}

#[test]
fn a_flow_map_changed_is_replaced_whole_and_keeps_its_lines_comment() {
    let t = edited(|f| {
        let l = f.limits.as_mut().unwrap();
        l.memory = Some("512m".into());
    });
    let (gone, new) = diff(COMMENTED, &t);
    assert_eq!(gone, ["limits: {memory: 384m}   # raised for the sale"]);
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(
        new[0].starts_with("limits:") && new[1].contains("memory: 512m"),
        "{new:?}"
    );
}

#[test]
fn shapes_it_does_not_know_are_written_whole_and_say_why() {
    // A file whose top level is not indented the way it reads: a key inside a flow map
    // spanning lines.
    let src =
        "tenant: acme\ntemplate: demo\nparameters: {site_title: A,\n  admin_email: a@b.test}\n";
    let old = parse(src);
    let mut new = old.clone();
    new.parameters
        .insert("site_title".into(), Value::String("B".into()));
    let w = rewrite(src, &old, &new);
    assert_eq!(
        serde_yaml::to_value(parse(w.text())).unwrap(),
        serde_yaml::to_value(&new).unwrap()
    );
    // Hostile text never panics the editor.
    for src in [
        "",
        "- a\n- b\n",
        "tenant: [\n",
        "'unclosed: x\n",
        "tenant: acme\n  stray\n",
        "\u{feff}tenant: é\n",
    ] {
        let _ = rewrite(src, &old, &new);
    }
}

fn write(src: &str, change: impl FnOnce(&mut InstanceFile)) -> Written {
    let old = parse(src);
    let mut new = old.clone();
    change(&mut new);
    let w = rewrite(src, &old, &new);
    let back = crate::spec::parse_yaml::<InstanceFile>(std::path::Path::new("t.yaml"), w.text())
        .expect("what is written loads as the agent loads it");
    assert_eq!(
        serde_yaml::to_value(back.value).unwrap(),
        serde_yaml::to_value(&new).unwrap()
    );
    w
}

fn set(k: &str, v: &str) -> impl FnOnce(&mut InstanceFile) {
    let (k, v) = (k.to_string(), v.to_string());
    move |f| {
        f.parameters.insert(k, Value::String(v));
    }
}

#[test]
fn a_key_it_cannot_read_is_never_written_twice() {
    // An anchored key (and a tab after a colon) is valid YAML this editor does not parse: the
    // file is written whole rather than with the key given twice, which the agent refuses.
    for src in [
        "tenant: acme\ntemplate: demo\nparameters:\n  &t site_title: Acme\n",
        "tenant: acme\ntemplate: demo\nparameters:\n  site_title:\t'Acme'\n",
    ] {
        let w = write(src, set("site_title", "New"));
        assert!(matches!(w, Written::Whole(..)), "{w:?}");
    }
}

#[test]
fn a_value_of_many_lines_is_written_on_one_and_exactly() {
    let src = "tenant: acme\ntemplate: demo\nparameters:\n  motd: hi   # greeting\n";
    for v in ["a\n\n", "  x\ny", "a\n# limits: {memory: 64g}", "\\\" # x"] {
        let w = write(src, set("motd", v));
        assert!(matches!(w, Written::InPlace(_)), "{v:?}: {w:?}");
        assert_eq!(w.text().lines().count(), 4, "{v:?}: {}", w.text());
    }
}

#[test]
fn trailing_comments_are_found_after_quotes_apostrophes_and_escapes() {
    let cases = [
        ("  t: Bob's  # note", Some("# note")),
        ("  t: 'it''s # not'  # note", Some("# note")),
        ("  t: \"a\\\" # not\"  # note", Some("# note")),
        ("  t: '#336699'", None),
        ("  t: a#b", None),
        ("  t: a\t# tabbed", Some("# tabbed")),
        ("  t:   # only a comment", Some("# only a comment")),
    ];
    for (line, want) in cases {
        assert_eq!(trailing_comment(line), want, "{line:?}");
    }
}

#[test]
fn crlf_files_stay_crlf_and_keys_added_together_keep_their_order() {
    let src = "tenant: acme\r\ntemplate: demo   # app\r\n";
    let w = write(src, |f| {
        f.pinned = true;
        f.labels.insert("tier".into(), "gold".into());
        f.plan = Some("small".into());
    });
    assert!(matches!(w, Written::InPlace(_)), "{w:?}");
    let t = w.text();
    assert!(
        t.starts_with("tenant: acme\r\ntemplate: demo   # app\r\n"),
        "{t:?}"
    );
    assert!(!t.replace("\r\n", "").contains('\n'), "{t:?}");
    let order: Vec<usize> = ["plan:", "pinned:", "labels:"]
        .iter()
        .map(|k| t.find(k).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "the struct's order: {t:?}"
    );
}
