//! Checks a YAML text's structure before serde sees it, one event at a time (no recursion, no
//! alias expansion), so hostile input costs little and every problem has a place: a key given
//! twice (at the second one), nesting deeper than any spec needs, more aliases than any spec
//! needs, and tabs (YAML indents with spaces).

use super::SpecError;
use std::{collections::HashSet, path::Path};
use yaml_rust2::parser::{Event, Parser};

/// Deeper than any template, instance or host config nests.
pub const MAX_DEPTH: usize = 32;
/// Aliases (`*name`) in one file; spec files need few, an alias bomb needs many.
pub const MAX_ALIASES: usize = 64;

enum Frame {
    /// Keys seen, and whether the next scalar/node is a key.
    Map {
        keys: HashSet<String>,
        expect_key: bool,
        path: String,
    },
    Seq {
        n: usize,
        path: String,
    },
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn at(file: &Path, line: usize, column: usize, field: &str, message: String) -> SpecError {
    SpecError {
        file: file.to_path_buf(),
        line,
        column,
        field: field.to_string(),
        message,
    }
}

/// The child path of the node about to start in the innermost frame (and advances it).
fn child_path(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        Some(Frame::Seq { n, path }) => join(path, &n.to_string()),
        Some(Frame::Map {
            expect_key, path, ..
        }) => {
            *expect_key = true;
            path.clone()
        }
        None => String::new(),
    }
}

/// The first structural problem in `src`, if any.
pub fn check(file: &Path, src: &str) -> Result<(), SpecError> {
    if let Some((n, line)) = src.lines().enumerate().find(|(_, l)| {
        let indent: String = l.chars().take_while(|c| c.is_whitespace()).collect();
        indent.contains('\t')
    }) {
        let col = line.find('\t').unwrap_or(0) + 1;
        return Err(at(
            file,
            n + 1,
            col,
            "",
            "a tab in the indentation; YAML indents with spaces only".into(),
        ));
    }
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut aliases = 0;
    // Key of the value being read, per map frame (set when a key scalar is consumed).
    let mut last_key: Vec<String> = Vec::new();
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(x) => x,
            // The parser's own depth guard: said here, with its place, at no further cost.
            Err(e) if e.info().contains("recursion limit") => {
                let m = e.marker();
                return Err(at(
                    file,
                    m.line(),
                    m.col() + 1,
                    "",
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ));
            }
            // Other syntax errors are serde_yaml's to report, with their own positions.
            Err(_) => return Ok(()),
        };
        let (line, col) = (mark.line(), mark.col() + 1);
        match ev {
            Event::StreamEnd => return Ok(()),
            Event::Alias(_) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(at(
                        file,
                        line,
                        col,
                        "",
                        format!("more than {MAX_ALIASES} aliases (*name) in one file"),
                    ));
                }
                value_done(&mut stack);
            }
            Event::Scalar(text, ..) => {
                if let Some(Frame::Map {
                    keys,
                    expect_key: expect_key @ true,
                    path,
                }) = stack.last_mut()
                {
                    if !keys.insert(text.clone()) {
                        return Err(at(
                            file,
                            line,
                            col,
                            &join(path, &text),
                            format!("key {text:?} is given twice"),
                        ));
                    }
                    *expect_key = false;
                    if let Some(k) = last_key.last_mut() {
                        *k = text;
                    }
                } else {
                    value_done(&mut stack);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let base = child_path_for(&mut stack, &last_key);
                if stack.len() >= MAX_DEPTH {
                    return Err(at(
                        file,
                        line,
                        col,
                        &base,
                        format!("nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if matches!(ev, Event::MappingStart(..)) {
                    stack.push(Frame::Map {
                        keys: HashSet::new(),
                        expect_key: true,
                        path: base,
                    });
                    last_key.push(String::new());
                } else {
                    stack.push(Frame::Seq { n: 0, path: base });
                }
            }
            Event::MappingEnd => {
                stack.pop();
                last_key.pop();
                value_done(&mut stack);
            }
            Event::SequenceEnd => {
                stack.pop();
                value_done(&mut stack);
            }
            _ => {}
        }
    }
}

/// Where the first alias (`*name`) stands: the place to point at when expanding aliases
/// blew serde_yaml's repetition limit.
pub fn first_alias(src: &str) -> Option<(usize, usize)> {
    let mut parser = Parser::new_from_str(src);
    loop {
        match parser.next_token() {
            Ok((Event::Alias(_), m)) => return Some((m.line(), m.col() + 1)),
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The path of a collection starting now: under the current key of a map, or the next index.
fn child_path_for(stack: &mut [Frame], last_key: &[String]) -> String {
    match stack.last() {
        Some(Frame::Map {
            expect_key: false,
            path,
            ..
        }) => join(path, last_key.last().map_or("", |k| k.as_str())),
        // A collection as a map key: rare, and never valid in a spec; no path for it.
        Some(Frame::Map { .. }) => String::new(),
        _ => child_path(stack),
    }
}

/// A value finished in the innermost frame: a map expects a key next, a sequence its next
/// item.
fn value_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { expect_key, .. }) => *expect_key = true,
        Some(Frame::Seq { n, .. }) => *n += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> SpecError {
        check(Path::new("i/x.yaml"), src).unwrap_err()
    }

    #[test]
    fn a_key_given_twice_is_reported_at_the_second() {
        let e = err("tenant: a\ntemplate: demo\ntenant: b\n");
        assert_eq!(
            e.to_string(),
            "i/x.yaml:3:1: tenant: key \"tenant\" is given twice"
        );
        let e = err("tenant: a\nlimits:\n  memory: 1g\n  cpus: 1\n  memory: 2g\n");
        assert_eq!(
            (e.line, e.column, e.field.as_str()),
            (5, 3, "limits.memory")
        );
        let e = err("parameters:\n  x: 1\n  y: [1, {a: 1, a: 2}]\n");
        assert_eq!((e.line, e.field.as_str()), (3, "parameters.y.1.a"));
    }

    #[test]
    fn the_same_key_in_sibling_maps_is_fine() {
        check(
            Path::new("x"),
            "a: {x: 1}\nb: {x: 2}\nc:\n  - x: 1\n  - x: 2\n",
        )
        .unwrap();
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused_with_a_place() {
        let e = err(&"[".repeat(50_000));
        assert!(e.message.contains("nested deeper than 32"), "{e}");
        assert_eq!(e.line, 1);
        let e = err(&format!("a:\n  {}1\n", "- ".repeat(40)));
        assert!(e.message.contains("nested deeper than 32"), "{e}");
        assert_eq!(e.line, 2);
        assert!(e.field.starts_with("a.0.0."), "{e}");
        let mut bomb = String::from("parameters:\n  a: &a [x, x]\n");
        for i in 0..70 {
            bomb.push_str(&format!("  b{i}: [*a, *a]\n"));
        }
        let e = err(&bomb);
        assert!(e.message.contains("aliases"), "{e}");
        assert!(e.line > 2, "{e}");
    }

    #[test]
    fn an_expansion_bomb_within_the_alias_count_is_placed_at_its_first_alias() {
        let mut bomb = String::from(
            "tenant: a\ntemplate: demo\nparameters:\n  l0: &l0 [x, x, x, x, x, x, x, x]\n",
        );
        for i in 1..8 {
            let refs = vec![format!("*l{}", i - 1); 8].join(", ");
            bomb.push_str(&format!("  l{i}: &l{i} [{refs}]\n"));
        }
        let e = crate::spec::parse_yaml::<crate::spec::instance::InstanceFile>(
            Path::new("i/x.yaml"),
            &bomb,
        )
        .unwrap_err();
        assert_eq!((e.line, e.column), (5, 12), "{e}");
        assert!(e.message.contains("alias"), "{e}");
    }

    #[test]
    fn a_tab_in_the_indentation_is_named() {
        let e = err("\ttenant: a\n");
        assert_eq!(
            e.to_string(),
            "i/x.yaml:1:1: a tab in the indentation; YAML indents with spaces only"
        );
        check(Path::new("x"), "tenant:\ta\n").unwrap();
    }
}
