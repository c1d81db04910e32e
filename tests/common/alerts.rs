//! The shipped alert rules, their promtool unit tests and the Grafana dashboard, held against a
//! real agent's scrape: every series they name is one berth exports, under the labels it has.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

pub const RULES: [&str; 2] = ["berth.rules.yml", "berth-backups.rules.yml"];
pub const RULE_TESTS: &str = "berth.rules.test.yml";
pub const DASHBOARD: &str = "docs/grafana/berth-tenants.json";

pub fn doc(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn prometheus_dir() -> PathBuf {
    doc("docs/prometheus")
}

/// A family of the scrape: its kind and the label names of each of its rows.
#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub label_sets: BTreeSet<BTreeSet<String>>,
}

/// The scrape's families by every series name they answer to (`_bucket` … for histograms).
pub fn families(scrape: &str) -> BTreeMap<String, Family> {
    let mut out = BTreeMap::new();
    for l in scrape.lines() {
        let Some(t) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = t.split_once(' ').unwrap();
        let names: Vec<String> = if kind == "histogram" {
            ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{name}{s}"))
                .collect()
        } else {
            vec![name.to_string()]
        };
        for n in names {
            out.insert(
                n,
                Family {
                    kind: kind.to_string(),
                    label_sets: BTreeSet::new(),
                },
            );
        }
    }
    for l in scrape.lines().filter(|l| !l.starts_with('#')) {
        let (name, keys) = series(l.rsplit_once(' ').map_or(l, |x| x.0));
        if let Some(f) = out.get_mut(&name) {
            f.label_sets.insert(keys);
        }
    }
    out
}

/// `name{a="x",b="y"}` → (name, {a, b}); `le` (a histogram's bucket) is left out.
pub fn series(s: &str) -> (String, BTreeSet<String>) {
    let label = regex::Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*""#).unwrap();
    let (name, rest) = s.split_once('{').unwrap_or((s, ""));
    let keys = label
        .captures_iter(rest)
        .map(|c| c[1].to_string())
        .filter(|k| k != "le")
        .collect();
    (name.trim().to_string(), keys)
}

/// Every `berth_…` name in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bberth_[a-z0-9_]+").unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The rule files and the dashboard name only series of `scrape`; the unit tests' input series
/// carry the label names of the scrape's own rows; every alert has a unit test.
pub fn check_against(scrape: &str) {
    let fams = families(scrape);
    let mut texts = vec![];
    for f in RULES.iter().chain([&RULE_TESTS]) {
        texts.push((f.to_string(), read(prometheus_dir().join(f))));
    }
    let dash = read(doc(DASHBOARD));
    let v: serde_json::Value = serde_json::from_str(&dash).expect("the dashboard is JSON");
    let exprs: Vec<String> = v["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().clone())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 20, "{exprs:?}");
    texts.push((DASHBOARD.into(), exprs.join("\n")));
    texts.push(("dashboard variables".into(), v["templating"].to_string()));
    for (file, text) in &texts {
        for n in names_in(text) {
            assert!(
                fams.contains_key(&n),
                "{file} names {n}, which berth's scrape does not have:\n{scrape}"
            );
        }
    }
    let tests: serde_yaml::Value = serde_yaml::from_str(&read(prometheus_dir().join(RULE_TESTS)))
        .expect("the rule tests are YAML");
    let mut tested = BTreeSet::new();
    for t in tests["tests"].as_sequence().unwrap() {
        for s in t["input_series"].as_sequence().unwrap() {
            let (name, keys) = series(s["series"].as_str().unwrap());
            let f = &fams[&name];
            assert!(
                f.label_sets.is_empty() || f.label_sets.contains(&keys),
                "{RULE_TESTS}: {name} with labels {keys:?}; berth's rows have {:?}",
                f.label_sets
            );
        }
        for a in t["alert_rule_test"].as_sequence().unwrap() {
            tested.insert(a["alertname"].as_str().unwrap().to_string());
        }
    }
    let alert = regex::Regex::new(r"(?m)^\s*- alert: (\w+)").unwrap();
    for f in RULES {
        for c in alert.captures_iter(&read(prometheus_dir().join(f))) {
            assert!(tested.contains(&c[1]), "{f}: {} has no unit test", &c[1]);
        }
    }
}

/// `promtool check rules` on each file and `promtool test rules` on the unit tests.
pub fn promtool_passes() {
    for f in RULES {
        let o = Command::new("promtool")
            .args(["check", "rules"])
            .arg(prometheus_dir().join(f))
            .output()
            .expect("promtool (Debian's prometheus) is installed by scripts/test.sh");
        assert!(o.status.success(), "{f}: {o:?}");
    }
    let o = Command::new("promtool")
        .args(["test", "rules", RULE_TESTS])
        .current_dir(prometheus_dir())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}
