//! Finds where a dotted field path sits in a YAML text, for errors found after parsing.

use std::collections::HashMap;
use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// Positions (1-based line, column) of every key and sequence item in one YAML document,
/// by dotted path: `services.app.image`, `domains.1`.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, (usize, usize)>);

impl Positions {
    pub fn parse(src: &str) -> Positions {
        let mut events = Events::default();
        // A text serde_yaml accepted parses here too; if not, errors just carry no position.
        let _ = Parser::new_from_str(src).load(&mut events, false);
        let mut out = Positions::default();
        let mut i = 0;
        walk(&events.0, &mut i, String::new(), &mut out.0);
        out
    }

    /// The position of `path`, else of its nearest ancestor that exists, else the file start.
    pub fn of(&self, path: &str) -> (usize, usize) {
        let mut p = path;
        loop {
            if let Some(pos) = self.0.get(p) {
                return *pos;
            }
            match p.rfind('.') {
                Some(i) => p = &p[..i],
                None => return (1, 1),
            }
        }
    }
}

#[derive(Default)]
struct Events(Vec<(Event, Marker)>);

impl MarkedEventReceiver for Events {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        self.0.push((ev, mark));
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn pos(m: &Marker) -> (usize, usize) {
    (m.line(), m.col() + 1)
}

/// Consumes one node starting at events[*i], recording positions below `path`.
fn walk(
    ev: &[(Event, Marker)],
    i: &mut usize,
    path: String,
    out: &mut HashMap<String, (usize, usize)>,
) {
    while *i < ev.len() {
        let (e, _) = &ev[*i];
        *i += 1;
        match e {
            Event::StreamStart | Event::DocumentStart => continue,
            Event::MappingStart(..) => {
                while *i < ev.len() && !matches!(ev[*i].0, Event::MappingEnd) {
                    let key = match &ev[*i].0 {
                        Event::Scalar(k, ..) => k.clone(),
                        _ => String::from("?"),
                    };
                    let at = pos(&ev[*i].1);
                    *i += 1;
                    let child = join(&path, &key);
                    out.insert(child.clone(), at);
                    walk(ev, i, child, out);
                }
                *i += 1;
                return;
            }
            Event::SequenceStart(..) => {
                let mut n = 0;
                while *i < ev.len() && !matches!(ev[*i].0, Event::SequenceEnd) {
                    let child = join(&path, &n.to_string());
                    out.insert(child.clone(), pos(&ev[*i].1));
                    walk(ev, i, child, out);
                    n += 1;
                }
                *i += 1;
                return;
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_keys_and_list_items_have_their_line_and_column() {
        let p = Positions::parse("a: 1\nb:\n  c: x\n  d:\n    - one\n    - two\n");
        assert_eq!(p.of("a"), (1, 1));
        assert_eq!(p.of("b.c"), (3, 3));
        assert_eq!(p.of("b.d.1"), (6, 7));
    }

    #[test]
    fn a_missing_path_falls_back_to_its_parent() {
        let p = Positions::parse("b:\n  c: x\n");
        assert_eq!(p.of("b.zzz"), p.of("b"));
        assert_eq!(p.of("b"), (1, 1));
        assert_eq!(p.of("nothing"), (1, 1));
    }
}
