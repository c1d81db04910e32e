//! Parsing of the files operators write: host config, app templates, tenant instances.
//! Everything here is "as written"; `desired` turns it into validated types.

pub mod edit;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod host;
pub mod instance;
pub mod lint;
pub mod locate;
pub mod probes;
pub mod repository;
pub mod template;
pub mod units;

pub use error::{SpecError, SpecErrors};
pub use locate::Positions;

use serde::de::DeserializeOwned;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

/// A parsed file with what is needed to point at places in it.
#[derive(Debug)]
pub struct Loaded<T> {
    /// Path as shown in messages (`instances/acme.yaml`).
    pub shown: PathBuf,
    pub value: T,
    /// The text, kept to locate errors; its position index is built only when one is needed,
    /// so a pass over valid files parses each once.
    src: String,
    positions: std::sync::OnceLock<Positions>,
}

impl<T> Loaded<T> {
    /// The text as read.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// An error located at `field` (a dotted path) in this file.
    pub fn error_at(&self, field: &str, message: impl Into<String>) -> SpecError {
        let (line, column) = self
            .positions
            .get_or_init(|| Positions::parse(&self.src))
            .of(field);
        SpecError {
            file: self.shown.clone(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Shows `path` from its parent directory's name on (`instances/acme.yaml`).
pub fn shown_path(path: &Path, depth: usize) -> PathBuf {
    let parts: Vec<_> = path.components().collect();
    let start = parts.len().saturating_sub(depth);
    parts[start..].iter().collect()
}

pub fn whole_file_error(shown: &Path, message: impl Into<String>) -> SpecError {
    SpecError {
        file: shown.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: message.into(),
    }
}

#[cfg(test)]
thread_local! {
    /// Parses on this thread, for the test that a broken file is parsed once per change.
    pub static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Parses YAML text, rejecting unknown keys, with errors located in `shown`.
pub fn parse_yaml<T: DeserializeOwned>(shown: &Path, src: &str) -> Result<Loaded<T>, SpecError> {
    #[cfg(test)]
    PARSES.with(|p| p.set(p.get() + 1));
    lint::check(shown, src)?;
    let value = serde_yaml::from_str::<T>(src).map_err(|e| {
        let mut err = error::from_yaml(shown.to_path_buf(), &e);
        if err.line == 0 && err.message.contains("repetition limit") {
            (err.line, err.column) = lint::first_alias(src).unwrap_or((1, 1));
            err.message = "aliases expand to too many nodes (repetition limit exceeded)".into();
        }
        // Every problem in a text has a place; the whole text's is its start.
        if err.line == 0 {
            (err.line, err.column) = (1, 1);
        }
        err
    })?;
    Ok(Loaded {
        shown: shown.to_path_buf(),
        value,
        src: src.to_string(),
        positions: std::sync::OnceLock::new(),
    })
}

/// Broken files by path, with the digest of the text that failed: every pass and request reads
/// all files, and a hostile one must cost one parse per change, not one per read.
static BROKEN: std::sync::Mutex<BTreeMap<PathBuf, ([u8; 32], SpecError)>> =
    std::sync::Mutex::new(BTreeMap::new());

pub fn load_yaml<T: DeserializeOwned>(path: &Path, shown: &Path) -> Result<Loaded<T>, SpecError> {
    use sha2::Digest;
    let src = std::fs::read_to_string(path)
        .map_err(|e| whole_file_error(shown, format!("cannot read: {e}")))?;
    let digest: [u8; 32] = sha2::Sha256::digest(src.as_bytes()).into();
    let key = path.to_path_buf();
    if let Some((d, e)) = BROKEN.lock().expect("cache lock").get(&key)
        && *d == digest
        && e.file == shown
    {
        return Err(e.clone());
    }
    let parsed = parse_yaml(shown, &src);
    let mut broken = BROKEN.lock().expect("cache lock");
    match &parsed {
        Err(e) => {
            broken.insert(key, (digest, e.clone()));
        }
        Ok(_) => {
            broken.remove(&key);
        }
    }
    parsed
}

/// A template file plus the config templates it references, read from its directory.
#[derive(Debug)]
pub struct TemplateSource {
    pub file: Loaded<template::TemplateFile>,
    /// Config name → template text.
    pub config_sources: BTreeMap<String, String>,
}

/// Reads `DIR/<app>/template.yaml` for every subdirectory.
pub fn load_templates(dir: &Path) -> (BTreeMap<String, TemplateSource>, SpecErrors) {
    let mut out = BTreeMap::new();
    let mut errors = SpecErrors::default();
    for sub in sorted_entries(dir).into_iter().filter(|p| p.is_dir()) {
        let app = sub
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let path = sub.join("template.yaml");
        let shown = shown_path(&path, 3);
        match load_yaml::<template::TemplateFile>(&path, &shown) {
            Ok(file) => match read_config_sources(&sub, &file) {
                Ok(config_sources) => {
                    out.insert(
                        app,
                        TemplateSource {
                            file,
                            config_sources,
                        },
                    );
                }
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(e),
        }
    }
    (out, errors)
}

fn read_config_sources(
    dir: &Path,
    file: &Loaded<template::TemplateFile>,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out = BTreeMap::new();
    for (name, cfg) in &file.value.configs {
        let field = format!("configs.{name}");
        let text = match (&cfg.template, &cfg.content) {
            (Some(rel), None) => {
                if Path::new(rel).is_absolute() || rel.contains("..") {
                    return Err(file.error_at(
                        &field,
                        "template must be a path inside the template directory",
                    ));
                }
                std::fs::read_to_string(dir.join(rel))
                    .map_err(|e| file.error_at(&field, format!("cannot read {rel}: {e}")))?
            }
            (None, Some(text)) => text.clone(),
            _ => {
                return Err(file.error_at(
                    &field,
                    "give exactly one of `template` (a file) or `content`",
                ));
            }
        };
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// Reads every `DIR/*.yaml`; returns the parsed ones and, by file stem, the ones that failed.
pub fn load_instances(
    dir: &Path,
) -> (
    Vec<Loaded<instance::InstanceFile>>,
    BTreeMap<String, SpecError>,
) {
    let mut ok = Vec::new();
    let mut bad = BTreeMap::new();
    for path in sorted_entries(dir) {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        match load_yaml::<instance::InstanceFile>(&path, &shown_path(&path, 2)) {
            Ok(l) => ok.push(l),
            Err(e) => {
                bad.insert(stem, e);
            }
        }
    }
    (ok, bad)
}

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_key_is_reported_with_file_line_column_and_field() {
        let src = "tenant: acme\ntemplate: demo\nlimits:\n  memroy: 1g\n";
        let err = parse_yaml::<instance::InstanceFile>(Path::new("instances/acme.yaml"), src)
            .unwrap_err();
        assert_eq!(err.line, 4);
        assert_eq!(err.column, 3);
        assert_eq!(err.field, "limits");
        assert!(
            err.to_string().starts_with(
                "instances/acme.yaml:4:3: limits: unknown field \"memroy\", expected one of"
            ),
            "{err}"
        );
    }

    #[test]
    fn a_broken_file_is_parsed_once_per_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.yaml");
        std::fs::write(&path, format!("tenant: [{}", "[".repeat(5000))).unwrap();
        let shown = Path::new("instances/broken.yaml");
        let load = || load_yaml::<instance::InstanceFile>(&path, shown).unwrap_err();
        let first = load();
        let before = PARSES.with(|p| p.get());
        for _ in 0..5 {
            assert_eq!(load(), first);
        }
        assert_eq!(
            PARSES.with(|p| p.get()),
            before,
            "the broken file was parsed again"
        );
        std::fs::write(&path, "tenant: [\n").unwrap();
        assert_ne!(load(), first, "a changed file was not parsed again");
    }

    #[test]
    fn malformed_yaml_is_located() {
        let err = parse_yaml::<instance::InstanceFile>(Path::new("i/x.yaml"), "tenant: [a\n")
            .unwrap_err();
        assert!(err.line >= 1, "{err}");
        assert!(err.to_string().starts_with("i/x.yaml:"), "{err}");
    }
}
