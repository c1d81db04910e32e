//! Labels on instances and the one selector syntax for the fleet (`berth ls`, `upgrade`,
//! `backup`, `suspend`/`resume`, `restart`, `export`, the API's list and the dashboard):
//! `-l tier=gold,region!=eu,beta,!legacy` (equal, not equal, has, lacks) and the fields
//! `--app`, `--plan`, `--phase`, `--version`. Every requirement must hold.

use std::collections::BTreeMap;

/// Labels a file may carry; each key and value is at most this long.
pub const MAX_LABELS: usize = 32;
const MAX_LEN: usize = 63;

/// Why a label key, value or selector is refused (shown after the field or argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "{0:?} is not a label key: 1 to 63 of a-z, A-Z, 0-9, '.', '_', '-', starting and ending with a letter or digit"
    )]
    Key(String),
    #[error(
        "{0:?} is not a label value: at most 63 of a-z, A-Z, 0-9, '.', '_', '-', starting and ending with a letter or digit"
    )]
    Value(String),
    #[error("{0} labels; at most {MAX_LABELS}")]
    TooMany(usize),
    #[error("an empty requirement in {0:?} (two commas, or one at an end)")]
    Empty(String),
}

fn word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

pub fn check_key(k: &str) -> Result<(), SelectorError> {
    word(k)
        .then_some(())
        .ok_or_else(|| SelectorError::Key(k.to_string()))
}

pub fn check_value(v: &str) -> Result<(), SelectorError> {
    (v.is_empty() || word(v))
        .then_some(())
        .ok_or_else(|| SelectorError::Value(v.to_string()))
}

/// An instance file's `labels:`, each error with the key it is about.
pub fn check_labels(labels: &BTreeMap<String, String>) -> Vec<(String, SelectorError)> {
    let mut out = vec![];
    if labels.len() > MAX_LABELS {
        out.push((String::new(), SelectorError::TooMany(labels.len())));
    }
    for (k, v) in labels {
        if let Err(e) = check_key(k).and_then(|()| check_value(v)) {
            out.push((k.clone(), e));
        }
    }
    out
}

/// One requirement on an instance's labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Has(String),
    Lacks(String),
}

impl Requirement {
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::Has(k) => labels.contains_key(k),
            Requirement::Lacks(k) => !labels.contains_key(k),
        }
    }
}

/// `tier=gold,region!=eu,beta,!legacy` → its requirements.
pub fn parse_labels(s: &str) -> Result<Vec<Requirement>, SelectorError> {
    if s.trim().is_empty() {
        return Ok(vec![]);
    }
    s.split(',')
        .map(|r| {
            let r = r.trim();
            if r.is_empty() {
                return Err(SelectorError::Empty(s.to_string()));
            }
            let req = if let Some((k, v)) = r.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = r.split_once('=') {
                let v = v.strip_prefix('=').unwrap_or(v);
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = r.strip_prefix('!') {
                Requirement::Lacks(k.trim().into())
            } else {
                Requirement::Has(r.into())
            };
            match &req {
                Requirement::Equals(k, v) | Requirement::NotEquals(k, v) => {
                    check_key(k)?;
                    check_value(v)?;
                }
                Requirement::Has(k) | Requirement::Lacks(k) => check_key(k)?,
            }
            Ok(req)
        })
        .collect()
}

/// What a selector is matched against: one tenant's fields and labels.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub app: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub version: Option<&'a str>,
    pub phase: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

/// Requirements on labels and fields, all of which must hold; empty selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub labels: Vec<Requirement>,
    pub app: Option<String>,
    pub plan: Option<String>,
    pub version: Option<String>,
    pub phase: Option<String>,
}

impl Selector {
    /// From the text forms (a field left empty or absent selects everything).
    pub fn parse(
        labels: Option<&str>,
        [app, plan, version, phase]: [Option<&str>; 4],
    ) -> Result<Selector, SelectorError> {
        let field = |v: Option<&str>| v.map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        Ok(Selector {
            labels: parse_labels(labels.unwrap_or_default())?,
            app: field(app),
            plan: field(plan),
            version: field(version),
            phase: field(phase),
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Selector::default()
    }

    pub fn matches(&self, s: &Subject) -> bool {
        let field = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        field(&self.app, s.app)
            && field(&self.plan, s.plan)
            && field(&self.version, s.version)
            && field(&self.phase, s.phase)
            && self.labels.iter().all(|r| r.holds(s.labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn each_requirement_and_field_selects_as_written() {
        let gold = labels(&[("tier", "gold"), ("region", "us"), ("beta", "")]);
        let plain = labels(&[("tier", "basic"), ("legacy", "yes")]);
        let subject = |l| Subject {
            app: Some("wordpress"),
            plan: Some("small"),
            version: Some("6.4"),
            phase: Some("running"),
            labels: l,
        };
        let cases: [(&str, [Option<&str>; 4], bool, bool); 9] = [
            ("", [None; 4], true, true),
            ("tier=gold", [None; 4], true, false),
            ("tier==gold", [None; 4], true, false),
            ("region!=eu", [None; 4], true, true),
            ("beta", [None; 4], true, false),
            ("!legacy", [None; 4], true, false),
            (
                "tier=gold,!legacy",
                [Some("wordpress"), None, None, None],
                true,
                false,
            ),
            ("", [Some("mautic"), None, None, None], false, false),
            (
                "",
                [None, Some("small"), Some("6.4"), Some("running")],
                true,
                true,
            ),
        ];
        for (text, fields, a, b) in cases {
            let s = Selector::parse(Some(text), fields).unwrap();
            assert_eq!(
                (s.matches(&subject(&gold)), s.matches(&subject(&plain))),
                (a, b),
                "{text:?} {fields:?}"
            );
        }
    }

    #[test]
    fn a_malformed_selector_or_label_is_refused_with_what_is_wrong() {
        for bad in [
            "tier=gold,",
            ",x",
            "-bad",
            "ok=-bad",
            "a b=c",
            "x=y z",
            "é=1",
            "!",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad:?}");
        }
        let long = "k".repeat(64);
        assert!(matches!(parse_labels(&long), Err(SelectorError::Key(_))));
        let too_many: BTreeMap<String, String> =
            (0..33).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(matches!(
            check_labels(&too_many)[0].1,
            SelectorError::TooMany(33)
        ));
        let bad = labels(&[("tier", "gold plus")]);
        assert_eq!(check_labels(&bad)[0].0, "tier");
    }
}
