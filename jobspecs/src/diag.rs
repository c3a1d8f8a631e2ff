//! Diagnostics: positioned messages (`file:line:column: message`) and the helpers that
//! make them, from byte offsets to 1-based lines and columns, and "did you mean" hints.

use std::fmt;
use std::ops::Range;

/// One problem found in a job file, at a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every problem found in a job file, in source order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics(vec![d])
    }
}

/// Turns byte offsets of one source text into diagnostics with lines and columns.
#[derive(Debug, Clone)]
pub struct SourceMap<'a> {
    file: &'a str,
    src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(file: &'a str, src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap {
            file,
            src,
            line_starts,
        }
    }

    pub fn file(&self) -> &'a str {
        self.file
    }

    pub fn src(&self) -> &'a str {
        self.src
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .src
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, column + 1)
    }

    /// A diagnostic at the start of `span` (or at the top of the file when unknown).
    pub fn at(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        let (line, column) = span.map(|s| self.line_col(s.start)).unwrap_or((1, 1));
        Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    /// The source text of a span, if it is inside the file.
    pub fn text(&self, span: &Range<usize>) -> Option<&'a str> {
        self.src.get(span.clone())
    }
}

/// Levenshtein distance between two short names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to a misspelt name, if it is close enough to be a likely typo.
pub fn closest<'c>(name: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (name.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(name, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `; did you mean "x"?` when a candidate is close, then the list of expected names.
pub fn suggestion(name: &str, candidates: &[&str]) -> String {
    let mut out = String::new();
    if let Some(c) = closest(name, candidates) {
        out.push_str(&format!("; did you mean {c:?}?"));
    }
    if !candidates.is_empty() {
        let mut sorted: Vec<&str> = candidates.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        out.push_str(&format!(" (expected one of: {})", sorted.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let sm = SourceMap::new("f.hcl", "ab\ncdé\nx");
        assert_eq!(sm.line_col(0), (1, 1));
        assert_eq!(sm.line_col(3), (2, 1));
        assert_eq!(sm.line_col(8), (3, 1));
    }

    #[test]
    fn closest_name_is_suggested() {
        assert_eq!(closest("drivr", &["driver", "user", "env"]), Some("driver"));
        assert_eq!(closest("zzzzzz", &["driver", "user"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
