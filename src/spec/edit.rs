//! Writes to an instance file that keep the operator's comments, order and layout: the file's
//! text is edited in place, only where the new content differs from the old (a key replaced,
//! added at the end or removed; in `parameters`, `limits` and `labels`, one entry of the map),
//! and the result is parsed again and must equal what was asked for. When an edit cannot be
//! made in place (a shape this editor does not know), the file is written whole instead, and
//! the caller is told so.

use serde::{Serialize, de::DeserializeOwned};
use serde_yaml::{Mapping, Value};

/// Maps edited entry by entry (one level down); any other value is replaced whole.
const NESTED: &[&str] = &["parameters", "limits", "labels"];

/// How the new text was made.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Edited in place: everything but the changed entries is as it was.
    InPlace(String),
    /// Written whole (comments and layout lost), with why.
    Whole(String, String),
}

impl Written {
    pub fn text(&self) -> &str {
        match self {
            Written::InPlace(t) | Written::Whole(t, _) => t,
        }
    }
}

/// `new` as the text of the file whose text is `src` (None: no file yet), edited in place
/// when `src` reads as an instance file.
pub fn rewrite_text<T: Serialize + DeserializeOwned>(src: Option<&str>, new: &T) -> Written {
    let fresh = || serde_yaml::to_string(new).map_err(|e| e.to_string());
    let Some(src) = src else {
        return match fresh() {
            Ok(t) => Written::InPlace(t),
            Err(e) => Written::Whole(String::new(), e),
        };
    };
    match serde_yaml::from_str::<T>(src) {
        Ok(old) => rewrite(src, &old, new),
        Err(e) => Written::Whole(
            fresh().unwrap_or_default(),
            format!("the file did not read as an instance file: {e}"),
        ),
    }
}

/// `new` as the text of the file that now reads as `old` (`src`).
pub fn rewrite<T: Serialize + DeserializeOwned>(src: &str, old: &T, new: &T) -> Written {
    let whole = |why: String| match serde_yaml::to_string(new) {
        Ok(t) => Written::Whole(t, why),
        Err(e) => Written::Whole(String::new(), e.to_string()),
    };
    let (Ok(o), Ok(n)) = (serde_yaml::to_value(old), serde_yaml::to_value(new)) else {
        return whole("the instance does not serialize".into());
    };
    let (Some(om), Some(nm)) = (o.as_mapping(), n.as_mapping()) else {
        return whole("not a mapping".into());
    };
    let mut lines: Vec<String> = src.lines().map(String::from).collect();
    let all = (0, lines.len());
    if let Err(why) = edit_map(&mut lines, all, 0, (om, nm), true) {
        return whole(why);
    }
    // The file's own line ends.
    let end = if src.contains("\r\n") { "\r\n" } else { "\n" };
    let mut text = lines.join(end);
    text.push_str(end);
    // What was written must read back, as the agent loads files (lint included), as what was
    // asked for.
    let shown = std::path::Path::new("instance.yaml");
    match super::parse_yaml::<T>(shown, &text).map(|t| serde_yaml::to_value(&t.value)) {
        Ok(Ok(v)) if v == n => Written::InPlace(text),
        _ => whole("the edit in place did not read back the same".into()),
    }
}

fn indent_of(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

/// Blank, a comment, or a document marker: belongs to no entry.
fn neutral(l: &str) -> bool {
    let t = l.trim();
    t.is_empty() || t.starts_with('#') || l.starts_with("---") || l.starts_with("...")
}

/// The key of an entry line at `indent` (`name:` or `name: value`), unquoted.
fn key_of(l: &str, indent: usize) -> Option<String> {
    if neutral(l) || indent_of(l) != indent {
        return None;
    }
    let rest = &l[indent..];
    let (key, after) = match rest.chars().next()? {
        q @ ('"' | '\'') => {
            let end = rest[1..].find(q)? + 1;
            (rest[1..end].to_string(), &rest[end + 1..])
        }
        '-' | '?' | '{' | '[' => return None,
        _ => {
            let colon = rest.find(':')?;
            (rest[..colon].trim_end().to_string(), &rest[colon..])
        }
    };
    let after = after.trim_start_matches(' ');
    let after = after.strip_prefix(':')?;
    (after.is_empty() || after.starts_with(' ')).then_some(key)
}

/// One `key: value` entry: its lines `[start, end)`, trailing blank and comment lines left
/// to what follows.
struct Entry {
    key: String,
    start: usize,
    end: usize,
}

fn entries(
    lines: &[String],
    (from, to): (usize, usize),
    indent: usize,
) -> Result<Vec<Entry>, String> {
    let mut out: Vec<Entry> = vec![];
    for (i, l) in lines.iter().enumerate().take(to).skip(from) {
        if let Some(key) = key_of(l, indent) {
            out.push(Entry {
                key,
                start: i,
                end: i + 1,
            });
        } else if !neutral(l) {
            let Some(last) = out.last_mut() else {
                return Err(format!("line {} belongs to no key", i + 1));
            };
            let at = indent_of(l);
            if at < indent || (at == indent && !l[at..].starts_with('-')) {
                return Err(format!("line {} is not an entry this editor knows", i + 1));
            }
            last.end = i + 1;
        }
    }
    Ok(out)
}

/// The comment at the end of a one-line entry (`key: value  # why`): after the key's colon, past
/// a quoted value (escapes and `''` understood), the first `#` after a space or tab.
fn trailing_comment(l: &str) -> Option<&str> {
    let colon = l.find(':')?;
    let value = l[colon + 1..].trim_start_matches([' ', '\t']);
    let start = l.len() - value.len();
    let mut rest = start;
    let b = l.as_bytes();
    if let Some(q @ (b'"' | b'\'')) = b.get(start).copied() {
        let mut i = start + 1;
        while i < b.len() {
            match (q, b[i]) {
                (b'"', b'\\') => i += 1,
                (b'\'', b'\'') if b.get(i + 1) == Some(&b'\'') => i += 1,
                (q, c) if c == q => break,
                _ => {}
            }
            i += 1;
        }
        rest = (i + 1).min(b.len());
    }
    // Right after a quoted value a `#` needs a space before it, as everywhere.
    let mut prev = if rest > start { b'x' } else { b' ' };
    for (i, c) in l[rest..].char_indices() {
        if c == '#' && (prev == b' ' || prev == b'\t') {
            return Some(&l[rest + i..]);
        }
        prev = if c.is_ascii() { c as u8 } else { b'x' };
    }
    None
}

/// `key: value` as lines at `indent`; `comment` kept at the end of a one-line entry.
fn render(
    key: &str,
    v: &Value,
    indent: usize,
    comment: Option<&str>,
) -> Result<Vec<String>, String> {
    let pad = " ".repeat(indent);
    let k = serde_yaml::to_string(&Value::String(key.into())).map_err(|e| e.to_string())?;
    let k = k.trim_end();
    let mut text = serde_yaml::to_string(v).map_err(|e| e.to_string())?;
    // A string that would take several lines (a block scalar) is written on one, double-quoted
    // (JSON's escapes are YAML's): exact, and nothing of it can look like a comment or a key.
    if let Value::String(st) = v
        && text.trim_end_matches('\n').contains('\n')
    {
        text = serde_json::to_string(st).map_err(|e| e.to_string())?;
    }
    let body: Vec<&str> = text.trim_end_matches('\n').lines().collect();
    let inline = body.len() == 1
        && !matches!(v, Value::Mapping(m) if !m.is_empty())
        && !matches!(v, Value::Sequence(s) if !s.is_empty());
    if inline {
        let mut l = format!("{pad}{k}: {}", body[0]);
        if let Some(c) = comment {
            l.push_str("  ");
            l.push_str(c);
        }
        return Ok(vec![l]);
    }
    // A block scalar (`|-`) starts on the key's line; a collection below it.
    let (head, rest) = match body.first() {
        Some(h) if h.starts_with('|') || h.starts_with('>') => {
            (format!("{pad}{k}: {h}"), &body[1..])
        }
        _ => (format!("{pad}{k}:"), &body[..]),
    };
    let mut out = vec![head];
    out.extend(rest.iter().map(|l| format!("{pad}  {l}")));
    Ok(out)
}

/// Edits the entries of the block mapping in `region` (at `indent`) from `old` to `new`.
fn edit_map(
    lines: &mut Vec<String>,
    region: (usize, usize),
    indent: usize,
    (old, new): (&Mapping, &Mapping),
    top: bool,
) -> Result<(), String> {
    let found = entries(lines, region, indent)?;
    let key = |k: &Value| k.as_str().map(String::from).ok_or("a key that is not text");
    // Edits from the bottom up, so the lines above keep their numbers.
    let mut edits: Vec<(usize, usize, Vec<String>)> = vec![];
    let mut added = vec![];
    for (k, nv) in new {
        let k = key(k)?;
        let ov = old.get(k.as_str());
        if ov == Some(nv) {
            continue;
        }
        match found.iter().find(|e| e.key == k) {
            Some(e) => edits.push(replace(lines, e, indent, (ov, nv), top)?),
            None => added.extend(render(&k, nv, indent, None)?),
        }
    }
    if !added.is_empty() {
        let at = found.last().map_or(region.1, |e| e.end);
        edits.push((at, at, added));
    }
    for k in old.keys() {
        let k = key(k)?;
        if !new.contains_key(k.as_str())
            && let Some(e) = found.iter().find(|e| e.key == k)
        {
            edits.push((e.start, e.end, vec![]));
        }
    }
    edits.sort_by_key(|(s, e, _)| std::cmp::Reverse((*s, *e)));
    for (s, e, with) in edits {
        lines.splice(s..e, with);
    }
    Ok(())
}

/// The lines that replace entry `e` (its own entries edited when it is a nested block map).
fn replace(
    lines: &[String],
    e: &Entry,
    indent: usize,
    (ov, nv): (Option<&Value>, &Value),
    top: bool,
) -> Result<(usize, usize, Vec<String>), String> {
    let head = &lines[e.start];
    let comment = trailing_comment(&head[indent..]).map(String::from);
    let block = e.end > e.start + 1;
    if let (true, true, Some(Value::Mapping(om)), Value::Mapping(nm)) =
        (top && NESTED.contains(&e.key.as_str()), block, ov, nv)
        && !nm.is_empty()
    {
        let inner = (e.start + 1..e.end)
            .map(|i| &lines[i])
            .find(|l| !neutral(l))
            .map(|l| indent_of(l))
            .unwrap_or(indent + 2);
        if inner > indent {
            let mut sub: Vec<String> = lines[e.start..e.end].to_vec();
            let n = sub.len();
            edit_map(&mut sub, (1, n), inner, (om, nm), false)?;
            return Ok((e.start, e.end, sub));
        }
    }
    let keep = if block { None } else { comment.as_deref() };
    let mut out = render(&e.key, nv, indent, keep)?;
    let many = out.len() > 1;
    if let (true, true, Some(c), Some(first)) = (block, many, &comment, out.first_mut()) {
        first.push_str("  ");
        first.push_str(c);
    }
    Ok((e.start, e.end, out))
}

#[cfg(test)]
mod tests;
