//! What an admin sees when the menu file is wrong: one error per problem, each with file:line:col and a fix.
//! Owns only the error types and their text; finding the problems is `yaml` and `validate`'s job.

use std::fmt;

/// A position in the menu file, 1-based, in characters (what an editor's status bar shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// For problems with the whole file (unreadable, empty, too large, no root menu).
    pub const FILE: Pos = Pos { line: 1, column: 1 };

    pub fn of(location: &serde_saphyr::Location) -> Pos {
        // A location the parser could not attribute is reported at the top rather than at "0:0",
        // which editors reject.
        let line = usize::try_from(location.line()).unwrap_or(1).max(1);
        let column = usize::try_from(location.column()).unwrap_or(1).max(1);
        Pos { line, column }
    }
}

/// One problem in the menu file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: error: {message}\n  help: {help}")]
pub struct MenuError {
    /// The file as the admin named it, e.g. `menus/kommunsupport.yaml`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, e.g. "route to undefined function 'itt'".
    pub message: String,
    /// What to do about it.
    pub help: String,
}

/// Every problem found in one menu file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct MenuErrors(pub Vec<MenuError>);

impl fmt::Display for MenuErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "{error}")?;
            writeln!(f)?;
        }
        match self.0.len() {
            1 => write!(f, "1 error"),
            n => write!(f, "{n} errors"),
        }
    }
}

/// Collects errors against one file label while the file is checked.
#[derive(Debug)]
pub(crate) struct Report {
    file: String,
    errors: Vec<MenuError>,
}

impl Report {
    pub fn new(file: &str) -> Report {
        Report {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, pos: Pos, message: impl Into<String>, help: impl Into<String>) {
        self.errors.push(MenuError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            help: help.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// The errors sorted into file order (stable: errors at one position keep the order they were found in).
    pub fn into_errors(mut self) -> MenuErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        MenuErrors(self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_prints_as_a_block_then_the_count() {
        let mut report = Report::new("menus/kommunsupport.yaml");
        report.error(
            Pos {
                line: 14,
                column: 20,
            },
            "route to undefined function 'itt'",
            "define 'itt' under `functions:`, or use one of: it, kundtjanst, personal",
        );
        report.error(Pos::FILE, "first", "fix it");
        let text = report.into_errors().to_string();
        assert_eq!(
            text,
            "menus/kommunsupport.yaml:1:1: error: first\n  help: fix it\n\n\
             menus/kommunsupport.yaml:14:20: error: route to undefined function 'itt'\n  \
             help: define 'itt' under `functions:`, or use one of: it, kundtjanst, personal\n\n\
             2 errors"
        );
    }

    #[test]
    fn a_single_error_is_counted_in_the_singular() {
        let mut report = Report::new("m.yaml");
        report.error(Pos::FILE, "x", "y");
        assert!(report.into_errors().to_string().ends_with("\n\n1 error"));
    }
}
