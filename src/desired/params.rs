//! Checks instance parameter values against the template's declared types and rules.

use super::Invalid;
use crate::spec::template::{ParameterFile, ParameterType};
use regex::Regex;
use serde_yaml::Value;

/// The value as text, or why it is not acceptable for `p`.
pub fn check(p: &ParameterFile, v: &Value) -> Result<String, Invalid> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(Invalid::NotScalar),
    };
    match p.kind {
        ParameterType::String => {}
        ParameterType::Email => {
            let ok = text.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty()
                    && d.contains('.')
                    && !text
                        .chars()
                        .any(|c| c.is_whitespace() || "<>\"'`;,".contains(c))
            });
            if !ok {
                return Err(Invalid::NotEmail(text));
            }
        }
        ParameterType::Color => {
            let hex = text.strip_prefix('#').unwrap_or("");
            if !(matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit())) {
                return Err(Invalid::NotColour(text));
            }
        }
        ParameterType::Integer => {
            let n: i64 = text
                .parse()
                .map_err(|_| Invalid::NotInteger(text.clone()))?;
            if p.min.is_some_and(|m| n < m) || p.max.is_some_and(|m| n > m) {
                return Err(Invalid::OutOfRange {
                    n,
                    min: p.min.unwrap_or(i64::MIN),
                    max: p.max.unwrap_or(i64::MAX),
                });
            }
        }
        ParameterType::Boolean => {
            if !matches!(text.as_str(), "true" | "false") {
                return Err(Invalid::NotBoolean(text));
            }
        }
        ParameterType::Enum => {
            if !p.values.contains(&text) {
                return Err(Invalid::NotOneOf {
                    text,
                    values: p.values.join(", "),
                });
            }
        }
    }
    if let Some(max) = p.max_length
        && text.chars().count() > max
    {
        return Err(Invalid::TooLong(max));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(Invalid::ControlCharacters);
    }
    if let Some(pat) = &p.pattern {
        let re = compile(pat)?;
        if !re.is_match(&text) {
            return Err(Invalid::NoMatch {
                text,
                pattern: pat.clone(),
            });
        }
    }
    Ok(text)
}

/// The rule as a regex anchored at both ends, so a pattern constrains the whole value.
pub fn compile(pat: &str) -> Result<Regex, Invalid> {
    Regex::new(&format!("^(?:{pat})$")).map_err(|e| Invalid::BadPattern(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(kind: ParameterType) -> ParameterFile {
        ParameterFile {
            kind,
            default: None,
            required: false,
            description: String::new(),
            pattern: None,
            max_length: None,
            min: None,
            max: None,
            values: vec![],
        }
    }

    #[test]
    fn typed_parameters_accept_good_values_and_explain_bad_ones() {
        let email = param(ParameterType::Email);
        assert_eq!(check(&email, &Value::from("a@b.io")), Ok("a@b.io".into()));
        assert!(
            check(&email, &Value::from("nope"))
                .unwrap_err()
                .to_string()
                .contains("not an email")
        );
        let color = param(ParameterType::Color);
        assert!(check(&color, &Value::from("#3366cc")).is_ok());
        assert!(check(&color, &Value::from("blue")).is_err());
    }

    #[test]
    fn patterns_must_match_the_whole_value_and_newlines_are_refused() {
        let mut p = param(ParameterType::String);
        p.pattern = Some("[a-z]+".into());
        assert!(check(&p, &Value::from("abc")).is_ok());
        assert!(check(&p, &Value::from("abc1")).is_err());
        let s = param(ParameterType::String);
        assert!(
            check(&s, &Value::from("a\nb"))
                .unwrap_err()
                .to_string()
                .contains("control")
        );
    }
}
