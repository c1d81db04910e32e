//! Spec errors that name the file, line, column and field an operator has to fix.

use std::{fmt, path::PathBuf};

/// One problem in one spec file, at one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    pub file: PathBuf,
    /// 1-based line and column; 0 when the problem has no position (a missing file).
    pub line: usize,
    pub column: usize,
    /// Dotted path of the field (`services.app.image`); empty for whole-file problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": {}: {}", self.field, self.message)
        }
    }
}

/// All problems found in a set of files, shown one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl SpecErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: SpecError) {
        self.0.push(e);
    }
    pub fn into_result(self) -> Result<(), SpecErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

/// Turns a serde_yaml error into a located SpecError. serde_yaml puts the field path in front
/// of its message ("limits: unknown field …") and the position at its end; we move the position
/// to the front, where editors and CI annotators look for it.
pub fn from_yaml(file: PathBuf, err: &serde_yaml::Error) -> SpecError {
    let text = err.to_string();
    let text = match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    let (field, message) = match text.split_once(": ") {
        Some((path, rest)) if !path.contains(' ') && !path.is_empty() => {
            (path.to_string(), rest.to_string())
        }
        _ => (String::new(), text),
    };
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    SpecError {
        file,
        line,
        column,
        field,
        message: message.replace('`', "\""),
    }
}
