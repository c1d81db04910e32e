//! The house's layers, kept: every `crate::…` import in `src/` (test code aside) is read, folded
//! to its top-level folder, and checked against the layer table in docs/ARCHITECTURE.md. A
//! folder imports only folders of lower layers; anything else must be listed there as a named
//! exception with its reason, and a listed exception that no longer happens fails too, so the
//! list only shrinks.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Edges = BTreeMap<(String, String), BTreeSet<String>>;

/// The folder-level imports of the crate under `src`: (from, to) → the files that make them.
fn edges(src: &Path) -> Edges {
    let mut out = Edges::new();
    for file in rust_files(src) {
        let rel = file
            .strip_prefix(src)
            .unwrap()
            .to_string_lossy()
            .to_string();
        if is_test_file(&rel) {
            continue;
        }
        let from = folder(&rel);
        let text = std::fs::read_to_string(&file).unwrap();
        for to in imports(&without_tests(&strip_comments(&text))) {
            if to != from {
                out.entry((from.clone(), to))
                    .or_default()
                    .insert(rel.clone());
            }
        }
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Unit tests and their helpers, compiled only under `cfg(test)`.
fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || rel == "fixtures.rs"
        || rel == "spec/fuzz.rs"
}

fn folder(rel: &str) -> String {
    let first = rel.split('/').next().unwrap_or(rel);
    first.trim_end_matches(".rs").to_string()
}

/// Line comments (doc comments included) removed, string contents left alone.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// The text without its inline `#[cfg(test)] mod … { … }` (unit tests sit at the end of a
/// file). A test module in a file of its own (`mod tests;`) is skipped as a file, and the
/// text after its declaration is kept.
fn without_tests(text: &str) -> String {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]") {
        let rest = text[at + i + 12..].trim_start();
        let rest = match rest.strip_prefix("#[path") {
            Some(r) => r.split_once(']').map_or("", |x| x.1).trim_start(),
            None => rest,
        };
        let module = rest
            .strip_prefix("pub ")
            .unwrap_or(rest)
            .strip_prefix("mod ");
        let inline =
            module.is_some_and(|m| m.find(['{', ';']).is_some_and(|j| m.as_bytes()[j] == b'{'));
        if inline {
            return text[..at + i].to_string();
        }
        at += i + 12;
    }
    text.to_string()
}

/// The top-level folders named after `crate::` in `text`, braces included
/// (`use crate::{a::b, c};` names a and c; `self` names none).
fn imports(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + 7..];
        let Some(group) = rest.strip_prefix('{') else {
            out.insert(ident(rest));
            continue;
        };
        let (mut depth, mut item_start) = (0, true);
        for (j, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                    out.insert(ident(&group[j..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    out.retain(|w| !w.is_empty() && w != "self");
    out
}

/// A table of docs/ARCHITECTURE.md between `<!-- name -->` and `<!-- /name -->`: each row's
/// cells, header and separator rows left out.
fn table(doc: &str, name: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(&format!("<!-- {name} -->"))
        .unwrap_or_else(|| panic!("docs/ARCHITECTURE.md has no <!-- {name} --> table"));
    let end = doc[start..]
        .find(&format!("<!-- /{name} -->"))
        .map(|e| start + e)
        .unwrap_or_else(|| panic!("the {name} table is not closed by <!-- /{name} -->"));
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| layer"))
        .filter(|l| !l.starts_with("| import"))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect()
}

/// The layer of each folder, from the `layers` table (`| 3 | `a`, `b` | … |`).
fn layers(doc: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for row in table(doc, "layers") {
        let n: u32 = row[0].parse().expect("a layer number");
        for f in row[1].split(',') {
            out.insert(f.trim().trim_matches('`').to_string(), n);
        }
    }
    out
}

/// The named exceptions (`| `a` → `b` | reason |`).
fn exceptions(doc: &str) -> BTreeSet<(String, String)> {
    table(doc, "upward")
        .into_iter()
        .map(|row| {
            let (a, b) = row[0]
                .split_once('→')
                .expect("an exception reads `a` → `b`");
            assert!(
                row.get(1).is_some_and(|r| r.len() > 10),
                "{row:?} needs its reason"
            );
            let clean = |s: &str| s.trim().trim_matches('`').to_string();
            (clean(a), clean(b))
        })
        .collect()
}

/// What breaks the rules: imports of a folder with no layer, imports that do not go down and
/// are not listed, and listed exceptions that no longer happen.
fn violations(
    edges: &Edges,
    layers: &BTreeMap<String, u32>,
    allowed: &BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for ((a, b), files) in edges {
        let (Some(la), Some(lb)) = (layers.get(a), layers.get(b)) else {
            out.push(format!("{a} → {b}: give both folders a layer in the table"));
            continue;
        };
        if lb >= la && !allowed.contains(&(a.clone(), b.clone())) {
            out.push(format!(
                "{a} (layer {la}) imports {b} (layer {lb}) in {files:?}: import downward only, \
                 or name the exception and its reason in docs/ARCHITECTURE.md"
            ));
        }
    }
    for (a, b) in allowed {
        if !edges.contains_key(&(a.clone(), b.clone())) {
            out.push(format!(
                "{a} → {b} is listed as an exception but no longer happens: remove it"
            ));
        }
    }
    out
}

fn cycles(edges: &Edges) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let circle: BTreeSet<String> = nodes
            .iter()
            .filter(|m| reaches[*n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .collect();
        if circle.len() > 1 && !out.contains(&circle) {
            out.push(circle);
        }
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_import_between_folders_goes_down_a_layer_or_is_a_named_exception_and_none_circles() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let edges = edges(&root().join("src"));
    let found = violations(&edges, &layers(&doc), &exceptions(&doc));
    assert!(
        found.is_empty(),
        "layer rules broken:\n{}",
        found.join("\n")
    );
    let circles = cycles(&edges);
    eprintln!(
        "{} folder imports, {} named exceptions, circles: {circles:?}",
        edges.len(),
        exceptions(&doc).len()
    );
    assert!(
        circles.is_empty(),
        "folders import each other in a circle (even through named exceptions): {circles:?}"
    );
}

#[test]
fn the_reader_sees_what_it_must_and_nothing_else() {
    let text = "use crate::{a::b, c, d::{e, f}, self};\nfn x() { crate::g::h(); }\n\
                #[cfg(test)]\nmod fuzz;\nuse crate::after_a_test_file;\n\
                // crate::commented\nlet s = \"http://x\"; crate::after_url::y();\n\
                #[cfg(test)]\nmod tests { use crate::test_only; }\n";
    let seen = imports(&without_tests(&strip_comments(text)));
    let want: BTreeSet<String> = ["a", "c", "d", "g", "after_a_test_file", "after_url"]
        .map(String::from)
        .into();
    assert_eq!(seen, want);
}

#[test]
fn an_upward_import_an_unknown_folder_and_a_stale_exception_are_each_reported() {
    let edges: Edges = [
        (
            ("low".into(), "high".into()),
            BTreeSet::from(["low/x.rs".to_string()]),
        ),
        (
            ("high".into(), "low".into()),
            BTreeSet::from(["high/y.rs".to_string()]),
        ),
        (
            ("high".into(), "nowhere".into()),
            BTreeSet::from(["high/z.rs".to_string()]),
        ),
    ]
    .into();
    let layers: BTreeMap<String, u32> = [("low".into(), 0), ("high".into(), 1)].into();
    let found = violations(
        &edges,
        &layers,
        &BTreeSet::from([("high".into(), "gone".into())]),
    );
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("high → nowhere") && found[1].starts_with("low (layer 0) imports high")
    );
    assert!(found[2].contains("no longer happens"));
    assert!(
        violations(
            &edges,
            &layers,
            &BTreeSet::from([("low".into(), "high".into())])
        )
        .iter()
        .all(|v| !v.starts_with("low (layer"))
    );
    assert_eq!(
        cycles(&edges),
        vec![BTreeSet::from(["high".to_string(), "low".to_string()])]
    );
}
