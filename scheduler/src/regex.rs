//! A small backtracking regular-expression matcher for the `regexp` constraint operator.
//!
//! Constraint patterns are short (`^linux$`, `(amd64|arm64)`, `^\d+\.\d+`) and the inputs
//! are node attributes, so a tiny matcher is enough and keeps the scheduler free of a
//! regex dependency. Supported: literals, `.`, `[...]` classes with ranges and negation,
//! `\d \w \s` (and their negations), escapes, `^ $`, groups `(...)` / `(?:...)`,
//! alternation `|`, and the quantifiers `* + ? {n} {n,} {n,m}` (a trailing lazy `?` is
//! accepted; it does not change whether a string matches). Matching is unanchored, like
//! Go's `MatchString`.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    Char(char),
    Any,
    Class {
        items: Vec<ClassItem>,
        negated: bool,
    },
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Shorthand { kind: char, negated: bool },
}

impl ClassItem {
    fn matches(&self, c: char) -> bool {
        match *self {
            ClassItem::Range(lo, hi) => lo <= c && c <= hi,
            ClassItem::Shorthand { kind, negated } => shorthand_matches(kind, c) != negated,
        }
    }
}

fn shorthand_matches(kind: char, c: char) -> bool {
    match kind {
        'd' => c.is_ascii_digit(),
        'w' => c.is_ascii_alphanumeric() || c == '_',
        's' => c.is_whitespace(),
        _ => false,
    }
}

impl Regex {
    /// Compiles `pattern`; an error is a sentence saying what is wrong with it.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parser = Parser { chars, pos: 0 };
        let root = parser.alternation()?;
        if parser.pos < parser.chars.len() {
            return Err(format!(
                "unexpected {:?} at offset {} in {pattern:?}",
                parser.chars[parser.pos], parser.pos
            ));
        }
        Ok(Regex { root })
    }

    /// Whether the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let chars: Vec<char> = text.chars().collect();
        (0..=chars.len()).any(|start| match_node(&self.root, &chars, start, &mut |_| true))
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            branches.push(self.concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(branches)
        })
    }

    fn concat(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(Node::Concat(items))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let c = self.peek().ok_or("unexpected end of pattern")?;
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '(' => {
                if self.chars[self.pos..].starts_with(&['?', ':']) {
                    self.pos += 2;
                }
                let inner = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err("missing closing parenthesis".into());
                }
                self.pos += 1;
                inner
            }
            '[' => self.class()?,
            '\\' => match self.escape()? {
                Escaped::Literal(c) => Node::Char(c),
                Escaped::Shorthand { kind, negated } => Node::Class {
                    items: vec![ClassItem::Shorthand {
                        kind,
                        negated: false,
                    }],
                    negated,
                },
            },
            '*' | '+' | '?' => return Err(format!("nothing to repeat before {c:?}")),
            c => Node::Char(c),
        })
    }

    fn escape(&mut self) -> Result<Escaped, String> {
        let c = self.peek().ok_or("pattern ends with a backslash")?;
        self.pos += 1;
        Ok(match c {
            'd' | 'w' | 's' => Escaped::Shorthand {
                kind: c,
                negated: false,
            },
            'D' | 'W' | 'S' => Escaped::Shorthand {
                kind: c.to_ascii_lowercase(),
                negated: true,
            },
            'n' => Escaped::Literal('\n'),
            't' => Escaped::Literal('\t'),
            c => Escaped::Literal(c),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or("missing closing bracket")?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' => match self.escape()? {
                    Escaped::Literal(c) => c,
                    Escaped::Shorthand { kind, negated } => {
                        items.push(ClassItem::Shorthand { kind, negated });
                        continue;
                    }
                },
                c => c,
            };
            let is_range = self.peek() == Some('-') && self.chars.get(self.pos + 1) != Some(&']');
            if is_range && self.pos + 1 < self.chars.len() {
                self.pos += 1;
                let mut hi = self.chars[self.pos];
                self.pos += 1;
                if hi == '\\' {
                    match self.escape()? {
                        Escaped::Literal(c) => hi = c,
                        Escaped::Shorthand { .. } => return Err("bad range in class".into()),
                    }
                }
                if hi < lo {
                    return Err(format!("range {lo}-{hi} is out of order"));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class { items, negated })
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, String> {
        let (min, max) = match self.peek() {
            Some('*') => self.single(0, None),
            Some('+') => self.single(1, None),
            Some('?') => self.single(0, Some(1)),
            Some('{') => match self.counted()? {
                Some(bounds) => bounds,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        if self.peek() == Some('?') {
            self.pos += 1; // lazy marker: same match/no-match answer
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
        })
    }

    fn single(&mut self, min: u32, max: Option<u32>) -> (u32, Option<u32>) {
        self.pos += 1;
        (min, max)
    }

    /// Parses `{n}`, `{n,}` or `{n,m}`; a brace that does not start one is a literal.
    fn counted(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let Some(close) = rest.find('}') else {
            return Ok(None);
        };
        let body = &rest[1..close];
        let parse = |s: &str| s.trim().parse::<u32>().ok();
        let bounds = match body.split_once(',') {
            None => parse(body).map(|n| (n, Some(n))),
            Some((lo, "")) => parse(lo).map(|n| (n, None)),
            Some((lo, hi)) => parse(lo).zip(parse(hi)).map(|(a, b)| (a, Some(b))),
        };
        match bounds {
            Some((lo, Some(hi))) if hi < lo => Err(format!("bad repeat {{{body}}}")),
            Some(b) => {
                self.pos += rest[..=close].chars().count();
                Ok(Some(b))
            }
            None => Ok(None),
        }
    }
}

enum Escaped {
    Literal(char),
    Shorthand { kind: char, negated: bool },
}

/// Continuation-passing backtracking: `k` is called with each position where `node` can
/// end a match starting at `pos`, until it returns true.
fn match_node(node: &Node, text: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match node {
        Node::Empty => k(pos),
        Node::Char(c) => text.get(pos) == Some(c) && k(pos + 1),
        Node::Any => text.get(pos).is_some_and(|&c| c != '\n') && k(pos + 1),
        Node::Class { items, negated } => {
            text.get(pos)
                .is_some_and(|&c| items.iter().any(|i| i.matches(c)) != *negated)
                && k(pos + 1)
        }
        Node::Start => pos == 0 && k(pos),
        Node::End => pos == text.len() && k(pos),
        Node::Concat(items) => match_seq(items, text, pos, k),
        Node::Alt(branches) => branches.iter().any(|b| match_node(b, text, pos, k)),
        Node::Repeat { node, min, max } => match_repeat(node, *min, *max, 0, text, pos, k),
    }
}

fn match_seq(items: &[Node], text: &[char], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
    match items.split_first() {
        None => k(pos),
        Some((first, rest)) => match_node(first, text, pos, &mut |p| match_seq(rest, text, p, k)),
    }
}

fn match_repeat(
    node: &Node,
    min: u32,
    max: Option<u32>,
    count: u32,
    text: &[char],
    pos: usize,
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if max.is_some_and(|m| count >= m) {
        return k(pos);
    }
    // Greedy: try one more repetition first; an empty repetition past `min` would loop.
    let more = match_node(node, text, pos, &mut |p| {
        if p == pos && count >= min {
            return false;
        }
        match_repeat(node, min, max, count + 1, text, p, k)
    });
    more || (count >= min && k(pos))
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
    }
}
