//! `?filter=` expressions, in the grammar Nomad takes (go-bexpr), evaluated over the JSON
//! form of each listed object, so field names are the API's (`ServiceName`, `Tags`).
//!
//! ```text
//! expr     := and ("or" and)*
//! and      := unary ("and" unary)*
//! unary    := "not" unary | "(" expr ")" | match
//! match    := selector ("==" | "!=") value
//!           | selector ["not"] ("contains" | "matches") value
//!           | selector "is" ["not"] "empty"
//!           | value ["not"] "in" selector
//! selector := name ("." name | "[" string "]")*
//! value    := "string" | `raw string` | number | true | false | name
//! ```
//!
//! A value is compared in the type of the field it meets (`Port == "80"` and `Port == 80`
//! agree). A field that is absent is empty: `==` is false, `!=` true. Hostile input is
//! bounded: the expression length, its nesting depth and each regular expression's size.

use serde_json::Value;

/// Longest expression accepted, in bytes.
pub const MAX_FILTER_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not`s accepted.
const MAX_DEPTH: usize = 32;
/// Compiled size limit of one `matches` regular expression.
const MAX_REGEX_SIZE: usize = 1 << 20;

/// A parsed filter.
#[derive(Debug, Clone)]
pub struct Filter(Expr);

#[derive(Debug, Clone)]
enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Match(Match),
}

#[derive(Debug, Clone)]
enum Match {
    Equal(Vec<String>, String),
    NotEqual(Vec<String>, String),
    /// `selector contains value` and `value in selector`.
    Contains(Vec<String>, String),
    Empty(Vec<String>),
    Matches(Vec<String>, Box<regex::Regex>),
}

impl Filter {
    /// Parse an expression; the error is a sentence naming the position (1-based column).
    pub fn parse(text: &str) -> Result<Filter, String> {
        if text.len() > MAX_FILTER_LEN {
            return Err(format!(
                "filter expression is {} bytes; at most {MAX_FILTER_LEN} are accepted",
                text.len()
            ));
        }
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            end: text.chars().count() + 1,
        };
        let e = p.expr(0)?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(format!(
                "filter expression has unexpected {} at column {}",
                t.kind.describe(),
                t.col
            ));
        }
        Ok(Filter(e))
    }

    /// Does `v` (an object's JSON form) pass the filter?
    pub fn matches(&self, v: &Value) -> bool {
        eval(&self.0, v)
    }
}

/// Parse `?filter=` when it is given and not blank.
pub fn parse_param(param: Option<&str>) -> Result<Option<Filter>, String> {
    match param.map(str::trim) {
        None | Some("") => Ok(None),
        Some(f) => Filter::parse(f)
            .map(Some)
            .map_err(|e| format!("invalid filter: {e}")),
    }
}

/// Keep the items whose JSON form passes `filter` (all of them without one).
pub fn apply<T: serde::Serialize>(filter: Option<&Filter>, items: Vec<T>) -> Vec<T> {
    match filter {
        None => items,
        Some(f) => items
            .into_iter()
            .filter(|i| serde_json::to_value(i).is_ok_and(|v| f.matches(&v)))
            .collect(),
    }
}

fn eval(e: &Expr, v: &Value) -> bool {
    match e {
        Expr::Or(a, b) => eval(a, v) || eval(b, v),
        Expr::And(a, b) => eval(a, v) && eval(b, v),
        Expr::Not(a) => !eval(a, v),
        Expr::Match(m) => match m {
            Match::Equal(sel, lit) => lookup(v, sel).is_some_and(|f| equal(f, lit)),
            Match::NotEqual(sel, lit) => !lookup(v, sel).is_some_and(|f| equal(f, lit)),
            Match::Contains(sel, lit) => match lookup(v, sel) {
                Some(Value::String(s)) => s.contains(lit.as_str()),
                Some(Value::Array(items)) => items.iter().any(|i| equal(i, lit)),
                Some(Value::Object(map)) => map.contains_key(lit),
                _ => false,
            },
            Match::Empty(sel) => match lookup(v, sel) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                Some(Value::Object(o)) => o.is_empty(),
                Some(_) => false,
            },
            Match::Matches(sel, re) => match lookup(v, sel) {
                Some(Value::String(s)) => re.is_match(s),
                _ => false,
            },
        },
    }
}

/// Follow a selector; a name matches a key exactly, else ignoring ASCII case.
fn lookup<'a>(v: &'a Value, sel: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for part in sel {
        let map = cur.as_object()?;
        cur = match map.get(part) {
            Some(x) => x,
            None => map.iter().find(|(k, _)| k.eq_ignore_ascii_case(part))?.1,
        };
    }
    Some(cur)
}

/// A field equals a literal when the literal, read as the field's type, is its value.
fn equal(field: &Value, lit: &str) -> bool {
    match field {
        Value::String(s) => s == lit,
        Value::Number(n) => match (n.as_i64(), lit.parse::<i64>()) {
            (Some(a), Ok(b)) => a == b,
            _ => n
                .as_f64()
                .zip(lit.parse::<f64>().ok())
                .is_some_and(|(a, b)| a == b),
        },
        Value::Bool(b) => lit.parse::<bool>().is_ok_and(|l| l == *b),
        Value::Null => lit.is_empty(),
        _ => false,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    LParen,
    RParen,
    LBracket,
    RBracket,
    Dot,
    Eq,
    Ne,
    /// A quoted or raw string.
    Str(String),
    /// A bare word: a name, keyword, number or boolean.
    Word(String),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::LParen => "\"(\"".into(),
            Kind::RParen => "\")\"".into(),
            Kind::LBracket => "\"[\"".into(),
            Kind::RBracket => "\"]\"".into(),
            Kind::Dot => "\".\"".into(),
            Kind::Eq => "\"==\"".into(),
            Kind::Ne => "\"!=\"".into(),
            Kind::Str(s) => format!("string {s:?}"),
            Kind::Word(w) => format!("{w:?}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    /// 1-based column (in characters) where the token starts.
    col: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | ':' | '/')
}

/// The expression's tokens with their columns. One match over the next character, as
/// lexers are written: splitting it per token kind would only scatter the cursor.
fn lex(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        let simple = match c {
            '(' => Some(Kind::LParen),
            ')' => Some(Kind::RParen),
            '[' => Some(Kind::LBracket),
            ']' => Some(Kind::RBracket),
            '.' if !chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => Some(Kind::Dot),
            _ => None,
        };
        if c.is_whitespace() {
            i += 1;
        } else if let Some(kind) = simple {
            out.push(Token { kind, col });
            i += 1;
        } else if c == '=' || c == '!' {
            if chars.get(i + 1) != Some(&'=') {
                return Err(format!(
                    "filter expression has {c:?} at column {col}; expected \"==\" or \"!=\""
                ));
            }
            let kind = if c == '=' { Kind::Eq } else { Kind::Ne };
            out.push(Token { kind, col });
            i += 2;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "filter expression has an unterminated string starting at column {col}"
                        ))
                    }
                    Some('"') => break,
                    Some('\\') => {
                        let esc = chars.get(i + 1).copied().ok_or_else(|| {
                            format!("filter expression ends inside the string at column {col}")
                        })?;
                        s.push(match esc {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            other => other,
                        });
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            i += 1;
            out.push(Token {
                kind: Kind::Str(s),
                col,
            });
        } else if c == '`' {
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|&ch| ch == '`') else {
                return Err(format!(
                    "filter expression has an unterminated raw string starting at column {col}"
                ));
            };
            out.push(Token {
                kind: Kind::Str(chars[start..start + len].iter().collect()),
                col,
            });
            i = start + len + 1;
        } else if is_word_char(c) || c == '.' {
            let start = i;
            // A number may carry a decimal point; names are split at dots.
            let numeric = c.is_ascii_digit() || c == '-' || c == '.';
            while i < chars.len() && (is_word_char(chars[i]) || (numeric && chars[i] == '.')) {
                i += 1;
            }
            out.push(Token {
                kind: Kind::Word(chars[start..i].iter().collect()),
                col,
            });
        } else {
            return Err(format!(
                "filter expression has unexpected character {c:?} at column {col}"
            ));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Column just past the end, for "ended early" errors.
    end: usize,
}

const KEYWORDS: &[&str] = &[
    "and", "or", "not", "in", "contains", "matches", "is", "empty",
];

impl Parser {
    fn peek(&self) -> Option<&Kind> {
        self.tokens.get(self.pos).map(|t| &t.kind)
    }

    fn peek_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Kind::Word(x)) if x == w)
    }

    fn col(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |t| t.col)
    }

    fn found(&self) -> String {
        self.tokens
            .get(self.pos)
            .map_or("the end".into(), |t| t.kind.describe())
    }

    fn expected(&self, what: &str) -> String {
        format!(
            "filter expression expected {what} at column {}, found {}",
            self.col(),
            self.found()
        )
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.and(depth)?;
        while self.peek_word("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        while self.peek_word("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "filter expression nests deeper than {MAX_DEPTH} levels at column {}",
                self.col()
            ));
        }
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary(depth + 1)?)));
        }
        if self.peek() == Some(&Kind::LParen) {
            self.pos += 1;
            let e = self.expr(depth + 1)?;
            if self.peek() != Some(&Kind::RParen) {
                return Err(self.expected("\")\""));
            }
            self.pos += 1;
            return Ok(e);
        }
        self.matcher()
    }

    fn matcher(&mut self) -> Result<Expr, String> {
        // `value [not] in selector` starts with a value; every other form with a selector.
        if let Some(value) = self.value_before_in()? {
            let negate = self.peek_word("not");
            if negate {
                self.pos += 1;
            }
            self.pos += 1; // "in"
            let sel = self.selector()?;
            return Ok(wrap(Match::Contains(sel, value), negate));
        }
        let sel = self.selector()?;
        match self.peek().cloned() {
            Some(Kind::Eq) => {
                self.pos += 1;
                Ok(wrap(Match::Equal(sel, self.value()?), false))
            }
            Some(Kind::Ne) => {
                self.pos += 1;
                Ok(wrap(Match::NotEqual(sel, self.value()?), false))
            }
            Some(Kind::Word(w)) if w == "is" => {
                self.pos += 1;
                let negate = self.peek_word("not");
                if negate {
                    self.pos += 1;
                }
                if !self.peek_word("empty") {
                    return Err(self.expected("\"empty\""));
                }
                self.pos += 1;
                Ok(wrap(Match::Empty(sel), negate))
            }
            Some(Kind::Word(w)) if w == "contains" || w == "matches" || w == "not" => {
                let negate = w == "not";
                if negate {
                    self.pos += 1;
                }
                let op_col = self.col();
                let m = if self.peek_word("contains") {
                    self.pos += 1;
                    Match::Contains(sel, self.value()?)
                } else if self.peek_word("matches") {
                    self.pos += 1;
                    let pattern = self.value()?;
                    let re = regex::RegexBuilder::new(&pattern)
                        .size_limit(MAX_REGEX_SIZE)
                        .build()
                        .map_err(|e| {
                            format!(
                                "filter expression has an invalid regular expression after \
                                 column {op_col}: {e}"
                            )
                        })?;
                    Match::Matches(sel, Box::new(re))
                } else {
                    return Err(self.expected("\"contains\", \"matches\" or \"in\""));
                };
                Ok(wrap(m, negate))
            }
            _ => Err(self.expected(
                "an operator (==, !=, contains, not contains, matches, not matches, is empty, \
                 is not empty)",
            )),
        }
    }

    /// When the tokens ahead are `value [not] in`, take the value and leave `[not] in`.
    fn value_before_in(&mut self) -> Result<Option<String>, String> {
        let lit = match self.peek() {
            Some(Kind::Str(s)) => s.clone(),
            Some(Kind::Word(w)) if !KEYWORDS.contains(&w.as_str()) => w.clone(),
            _ => return Ok(None),
        };
        let next = self.tokens.get(self.pos + 1).map(|t| &t.kind);
        let after = self.tokens.get(self.pos + 2).map(|t| &t.kind);
        let is_in = matches!(next, Some(Kind::Word(w)) if w == "in")
            || (matches!(next, Some(Kind::Word(w)) if w == "not")
                && matches!(after, Some(Kind::Word(w)) if w == "in"));
        if !is_in {
            return Ok(None);
        }
        self.pos += 1;
        Ok(Some(lit))
    }

    fn selector(&mut self) -> Result<Vec<String>, String> {
        let mut parts = vec![self.name()?];
        loop {
            match self.peek() {
                Some(Kind::Dot) => {
                    self.pos += 1;
                    parts.push(self.name()?);
                }
                Some(Kind::LBracket) => {
                    self.pos += 1;
                    let Some(Kind::Str(key)) = self.peek().cloned() else {
                        return Err(self.expected("a quoted map key"));
                    };
                    self.pos += 1;
                    if self.peek() != Some(&Kind::RBracket) {
                        return Err(self.expected("\"]\""));
                    }
                    self.pos += 1;
                    parts.push(key);
                }
                _ => return Ok(parts),
            }
        }
    }

    fn name(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Kind::Word(w))
                if !KEYWORDS.contains(&w.as_str())
                    && w.chars()
                        .next()
                        .is_some_and(|c| c.is_alphabetic() || c == '_') =>
            {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.expected("a field name")),
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Kind::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            Some(Kind::Word(w)) if !KEYWORDS.contains(&w.as_str()) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.expected("a value (a quoted string, number or boolean)")),
        }
    }
}

/// A match, negated by `not contains`, `not in`, `is not empty`, `not matches`.
fn wrap(m: Match, negate: bool) -> Expr {
    let e = Expr::Match(m);
    if negate {
        Expr::Not(Box::new(e))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reg() -> Value {
        json!({
            "ID": "_nomad-task-abc-web-web-http",
            "ServiceName": "web",
            "Namespace": "default",
            "Tags": ["traefik.enable=true", "traefik.http.routers.web.rule=Host(`a.com`)", "v2"],
            "Port": 8080,
            "Address": "10.0.0.1",
            "Meta": {"owner": "ops", "my-key": "x"},
            "Canary": false,
            "Empty": "",
            "Nothing": null,
            "Nested": {"Inner": {"Depth": 3}}
        })
    }

    fn check(expr: &str) -> bool {
        Filter::parse(expr)
            .unwrap_or_else(|e| panic!("{expr}: {e}"))
            .matches(&reg())
    }

    #[test]
    fn traefiks_tag_filter_matches_tagged_instances_only() {
        assert!(check(r#"Tags contains "traefik.enable=true""#));
        assert!(!check(r#"Tags contains "traefik.enable=false""#));
        assert!(check(r#""traefik.enable=true" in Tags"#));
        assert!(check(r#""nope" not in Tags"#));
        assert!(check(r#"Tags not contains "nope""#));
    }

    #[test]
    fn equality_compares_in_the_fields_type() {
        assert!(check(r#"ServiceName == "web""#));
        assert!(check(r#"ServiceName != "db""#));
        assert!(check("Port == 8080"));
        assert!(check(r#"Port == "8080""#));
        assert!(!check("Port == 80"));
        assert!(check("Canary == false"));
        assert!(check("Nested.Inner.Depth == 3"));
        assert!(check("servicename == web"), "names fall back to any case");
        assert!(!check(r#"Missing == "x""#));
        assert!(check(r#"Missing != "x""#));
    }

    #[test]
    fn map_selectors_take_dots_and_brackets() {
        assert!(check(r#"Meta.owner == "ops""#));
        assert!(check(r#"Meta["my-key"] == `x`"#));
        assert!(check(r#"Meta contains "owner""#));
        assert!(check(r#""owner" in Meta"#));
        assert!(check(r#"Meta.absent is empty"#));
    }

    #[test]
    fn emptiness_substrings_and_regexes() {
        assert!(check("Empty is empty"));
        assert!(check("Nothing is empty"));
        assert!(check("Tags is not empty"));
        assert!(check(r#"Address contains "10.0""#));
        assert!(check(r#"ID matches "^_nomad-task-[a-z]+-""#));
        assert!(check(r#"ServiceName not matches "^db""#));
        assert!(check(
            r#"Tags contains "traefik.http.routers.web.rule=Host(`a.com`)""#
        ));
    }

    #[test]
    fn boolean_operators_group_with_and_binding_tighter() {
        assert!(check(
            r#"ServiceName == "db" or ServiceName == "web" and Port == 8080"#
        ));
        assert!(!check(
            r#"(ServiceName == "db" or ServiceName == "web") and Port == 1"#
        ));
        assert!(check(r#"not ServiceName == "db""#));
        assert!(check(r#"not (ServiceName == "db" or Port == 1)"#));
        assert!(!check(r#"not not ServiceName == "db""#));
    }

    #[test]
    fn bad_expressions_are_sentences_naming_the_column() {
        for (expr, col) in [
            (r#"ServiceName = "web""#, "column 13"),
            (r#"ServiceName == "web" and"#, "column 25"),
            (r#"(ServiceName == "web""#, "column 22"),
            (r#"ServiceName == "web"#, "column 16"),
            (r#"ServiceName is full"#, "column 16"),
            (r#"ServiceName matches "(""#, "column 13"),
            (r#"ServiceName == "a" )"#, "column 20"),
            ("== 3", "column 1"),
            ("Tags contains", "column 14"),
            ("Name ~ 1", "column 6"),
        ] {
            let e = Filter::parse(expr).unwrap_err();
            assert!(e.contains(col), "{expr}: {e}");
            assert!(e.starts_with("filter expression"), "{expr}: {e}");
        }
    }

    #[test]
    fn hostile_expressions_are_refused_without_blowing_the_stack() {
        let deep = format!("{}Port == 1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert!(Filter::parse(&deep[..MAX_FILTER_LEN])
            .unwrap_err()
            .contains("nests deeper"));
        let nots = format!("{}Port == 1", "not ".repeat(1000));
        assert!(Filter::parse(&nots).unwrap_err().contains("nests deeper"));
        let long = format!("Port == \"{}\"", "x".repeat(MAX_FILTER_LEN));
        assert!(Filter::parse(&long).unwrap_err().contains("at most"));
        let huge_re = r#"ID matches "(\w{1000}){1000}""#;
        assert!(Filter::parse(huge_re)
            .unwrap_err()
            .contains("regular expression"));
        // Long flat chains are fine: they do not nest.
        let chain = vec!["Port == 8080"; 200].join(" and ");
        assert!(check(&chain));
    }

    #[test]
    fn apply_keeps_only_matching_items_and_blank_filters_keep_all() {
        let items = vec![json!({"A": 1}), json!({"A": 2})];
        let f = parse_param(Some("A == 2")).unwrap();
        assert_eq!(apply(f.as_ref(), items.clone()), vec![json!({"A": 2})]);
        assert!(parse_param(Some("  ")).unwrap().is_none());
        assert_eq!(apply(None, items.clone()).len(), 2);
        assert!(parse_param(Some("A =="))
            .unwrap_err()
            .starts_with("invalid filter: "));
    }
}
