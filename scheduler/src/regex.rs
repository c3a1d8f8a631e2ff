//! The `regexp` constraint operator's patterns, compiled by the `regex` crate.
//!
//! Nomad evaluates `regexp` with Go's RE2 engine; the `regex` crate implements the same
//! syntax family with the same guarantee: matching time is linear in the input, whatever
//! the pattern, so a job's pattern cannot stall a scheduling worker. Matching is unanchored,
//! like Go's `MatchString`. Perl classes (`\d`, `\w`, `\s`) and `\b` are ASCII-only, as in
//! RE2, while `.` and literals work on Unicode characters.

/// The largest compiled program a pattern may produce. Node-attribute patterns are tiny; this
/// keeps a hostile `(x{1000}){1000}` from costing the scheduler memory and time to compile.
const SIZE_LIMIT: usize = 1 << 20;

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex(regex::Regex);

impl Regex {
    /// Compiles `pattern`; an error is a sentence saying what is wrong with it.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        regex::RegexBuilder::new(&ascii_perl_classes(pattern))
            .size_limit(SIZE_LIMIT)
            .build()
            .map(Regex)
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => format!(
                    "the regexp {pattern:?} compiles to more than {limit} bytes; \
                     use a shorter pattern or fewer repetitions"
                ),
                other => format!("the regexp {pattern:?} is not valid: {other}"),
            })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }
}

/// Rewrites `\d \w \s` (and their negations) into ASCII classes and `\b \B` into their
/// ASCII forms, so they mean what RE2 means by them; the `regex` crate's are Unicode-aware.
/// Inside `[...]` the classes are spliced in as ranges (or nested negated classes). Everything
/// else is passed through untouched, so syntax errors are reported by the crate.
fn ascii_perl_classes(pattern: &str) -> String {
    const DIGIT: &str = "0-9";
    const WORD: &str = "0-9A-Za-z_";
    const SPACE: &str = r"\t\n\x0C\r ";
    let mut out = String::with_capacity(pattern.len() + 16);
    // Class nesting depth as the `regex` crate parses it, and whether the previous token
    // opened a class (a `]` right after `[` or `[^` is a literal).
    let mut depth = 0usize;
    let mut just_opened = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let opened = just_opened;
        just_opened = false;
        match c {
            '\\' => {
                let Some(k) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (set, negated) = match k {
                    'd' | 'D' => (DIGIT, k == 'D'),
                    'w' | 'W' => (WORD, k == 'W'),
                    's' | 'S' => (SPACE, k == 'S'),
                    'b' | 'B' if depth == 0 => {
                        out.push_str("(?-u:\\");
                        out.push(k);
                        out.push(')');
                        continue;
                    }
                    _ => {
                        out.push('\\');
                        out.push(k);
                        continue;
                    }
                };
                let bang = if negated { "^" } else { "" };
                if depth > 0 && !negated {
                    out.push_str(set);
                } else {
                    out.push_str(&format!("[{bang}{set}]"));
                }
            }
            '[' => {
                // `[:alpha:]` inside a class is a POSIX class, not a nested one.
                if depth > 0 && chars.peek() == Some(&':') {
                    out.push('[');
                    for p in chars.by_ref() {
                        out.push(p);
                        if p == ']' {
                            break;
                        }
                    }
                    continue;
                }
                out.push('[');
                depth += 1;
                just_opened = true;
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
            }
            ']' if depth > 0 && !opened => {
                out.push(']');
                depth -= 1;
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Regex;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().is_match(t)
    }

    #[test]
    fn anchors_and_literals() {
        assert!(m("^linux$", "linux"));
        assert!(!m("^linux$", "linux2"));
        assert!(m("inu", "linux"));
        assert!(m("", "anything"));
    }

    #[test]
    fn classes_and_shorthands() {
        assert!(m(r"^\d+\.\d+$", "10.25"));
        assert!(!m(r"^\d+\.\d+$", "10.x"));
        assert!(m("^[a-c]+$", "abcab"));
        assert!(!m("^[^a-c]+$", "xxa"));
        assert!(m(r"^[\w-]+$", "node-01_a"));
        assert!(m(r"^\S+\s\S+$", "a b"));
        assert!(m(r"^[^\d]+$", "abc"));
        assert!(!m(r"^[^\d]+$", "a1c"));
        assert!(m(r"^[\D]+$", "abc"));
        assert!(m(r"^[]a]+$", "a]a"));
        assert!(m(r"^[[:alpha:]\d]+$", "ab12"));
        assert!(m(r"\bfoo\b", "a foo b"));
        assert!(!m(r"\bfoo\b", "afoo"));
    }

    #[test]
    fn perl_classes_are_ascii_like_re2_but_dot_is_a_character() {
        // Arabic-Indic three, a non-breaking space and an accented letter.
        assert!(!m(r"^\d$", "\u{663}"));
        assert!(m(r"^\D$", "\u{663}"));
        assert!(!m(r"^\s$", "\u{a0}"));
        assert!(!m(r"^\w$", "é"));
        assert!(m(r"^[\W]$", "é"));
        assert!(m("^.$", "é"));
        assert!(m("^é+$", "éé"));
    }

    #[test]
    fn alternation_groups_and_repeats() {
        assert!(m("^(amd64|arm64)$", "arm64"));
        assert!(!m("^(amd64|arm64)$", "386"));
        assert!(m("^(?:ab)*c$", "ababc"));
        assert!(m("^a{2,3}$", "aaa"));
        assert!(!m("^a{2,3}$", "aaaa"));
        assert!(m("^a{2,}$", "aaaaa"));
        assert!(m("^colou?r$", "color"));
        assert!(m("^x.*?y$", "x123y"));
        assert!(m("^(a*)*$", "aaaa"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Regex::new("(abc").is_err());
        assert!(Regex::new("*a").is_err());
        assert!(Regex::new("[abc").is_err());
        assert!(Regex::new("abc)").is_err());
        assert!(Regex::new(r"abc\").is_err());
    }

    #[test]
    fn a_pattern_that_compiles_too_big_is_refused_with_a_sentence() {
        let err = Regex::new("((a{100}){100}){100}").unwrap_err();
        assert!(err.contains("compiles to more than"), "{err}");
    }

    #[test]
    fn catastrophic_backtracking_patterns_match_in_linear_time() {
        // A backtracking matcher takes 2^n steps here; this returns at once.
        let text = format!("{}b", "a".repeat(4096));
        assert!(!m("^(a|a)*$", &text));
        assert!(!m("^(a*)*c$", &text));
        assert!(!m("^(a+)+$", &text));
    }
}
