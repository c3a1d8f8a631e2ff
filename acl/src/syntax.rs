//! Policy text (HCL or JSON) -> a small positioned tree of blocks and attributes.
//!
//! Both formats land in the same [`Item`] tree, so the strict checks in `policy.rs` are
//! written once. HCL goes through hcl-edit (byte spans, as in `jobspecs`); JSON through a
//! small parser here, because serde_json forgets positions and the policy checks need one
//! for every key. JSON has no blocks, so the shape of a block (how many labels it takes)
//! comes from the caller's [`Shape`] function, as HCL's own JSON form works.

use hcl_edit::expr::Expression;
use hcl_edit::structure::{BlockLabel, Body, Structure};
use hcl_edit::Span;
use std::fmt;
use std::ops::Range;

/// Deepest bracket nesting a policy may have; real policies need five.
pub const MAX_NESTING: usize = 32;
/// Largest policy text accepted, in bytes.
pub const MAX_LEN: usize = 256 * 1024;

/// One problem in a policy, at a 1-based line and column (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Turns byte offsets into lines and columns.
pub struct SourceMap<'a> {
    src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub fn new(src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        SourceMap { src, line_starts }
    }

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

    pub fn at(&self, offset: usize, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col(offset);
        Diagnostic {
            line,
            column,
            message: message.into(),
        }
    }
}

/// An attribute or a block, with the span of its name.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub span: Range<usize>,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Attr(Value),
    Block { labels: Vec<Label>, body: Vec<Item> },
}

#[derive(Debug, Clone)]
pub struct Label {
    pub text: String,
    pub span: Range<usize>,
}

/// An attribute's value: policies only ever hold strings and lists of strings.
#[derive(Debug, Clone)]
pub enum Value {
    Str(String, Range<usize>),
    List(Vec<Value>, Range<usize>),
    /// Anything else, named by its type for the error message.
    Other(&'static str, Range<usize>),
}

impl Value {
    pub fn start(&self) -> usize {
        match self {
            Value::Str(_, s) | Value::List(_, s) | Value::Other(_, s) => s.start,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(..) => "a string",
            Value::List(..) => "a list",
            Value::Other(t, _) => t,
        }
    }
}

/// Refuses texts too large or too deeply nested before any recursive parser sees them,
/// so no input can exhaust the stack.
pub fn check_bounds(src: &str) -> Result<(), Diagnostic> {
    let sm = SourceMap::new(src);
    if src.len() > MAX_LEN {
        return Err(sm.at(
            0,
            format!(
                "policy is {} bytes, more than the {MAX_LEN} allowed",
                src.len()
            ),
        ));
    }
    let mut depth = 0usize;
    for (i, b) in src.bytes().enumerate() {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(sm.at(i, format!("nesting deeper than {MAX_NESTING} levels")));
                }
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses HCL into items. A syntax error stops here, with hcl-edit's position.
pub fn parse_hcl(src: &str) -> Result<Vec<Item>, Diagnostic> {
    check_bounds(src)?;
    let body = hcl_edit::parser::parse_body(src).map_err(|e| Diagnostic {
        line: e.location().line().max(1),
        column: e.location().column().max(1),
        message: format!("syntax error: {}", e.message()),
    })?;
    Ok(hcl_body(&body))
}

fn hcl_body(body: &Body) -> Vec<Item> {
    body.iter()
        .map(|s| match s {
            Structure::Attribute(a) => Item {
                name: a.key.as_str().to_string(),
                span: a.key.span().unwrap_or(0..0),
                kind: Kind::Attr(hcl_value(&a.value)),
            },
            Structure::Block(b) => Item {
                name: b.ident.as_str().to_string(),
                span: b.ident.span().unwrap_or(0..0),
                kind: Kind::Block {
                    labels: b
                        .labels
                        .iter()
                        .map(|l| Label {
                            text: match l {
                                BlockLabel::Ident(i) => i.as_str().to_string(),
                                BlockLabel::String(s) => s.as_str().to_string(),
                            },
                            span: l.span().unwrap_or(0..0),
                        })
                        .collect(),
                    body: hcl_body(&b.body),
                },
            },
        })
        .collect()
}

fn hcl_value(e: &Expression) -> Value {
    let span = e.span().unwrap_or(0..0);
    match e {
        Expression::String(s) => Value::Str(s.as_str().to_string(), span),
        Expression::Array(a) => Value::List(a.iter().map(hcl_value).collect(), span),
        Expression::Null(_) => Value::Other("null", span),
        Expression::Bool(_) => Value::Other("a bool", span),
        Expression::Number(_) => Value::Other("a number", span),
        Expression::Object(_) => Value::Other("an object", span),
        Expression::StringTemplate(_) | Expression::HeredocTemplate(_) => {
            Value::Other("a template (policies take plain strings)", span)
        }
        _ => Value::Other("an expression (policies take plain strings)", span),
    }
}

/// How many labels the block `name` takes inside `parent` (`""` at the top), or `None`
/// when `name` is an attribute or unknown there.
pub type Shape = fn(parent: &str, name: &str) -> Option<usize>;

/// Parses HCL's JSON form into items, using `shape` to tell blocks from attributes.
pub fn parse_json(src: &str, shape: Shape) -> Result<Vec<Item>, Diagnostic> {
    check_bounds(src)?;
    let sm = SourceMap::new(src);
    let mut p = JsonParser {
        src: src.as_bytes(),
        pos: 0,
    };
    let doc = p.document().map_err(|(at, msg)| sm.at(at, msg))?;
    let mut errors = Vec::new();
    let items = json_body(&doc, "", shape, &mut errors);
    match errors.into_iter().next() {
        Some((at, msg)) => Err(sm.at(at, msg)),
        None => Ok(items),
    }
}

type JsonErr = (usize, String);

fn json_body(v: &Json, parent: &str, shape: Shape, errors: &mut Vec<JsonErr>) -> Vec<Item> {
    let mut out = Vec::new();
    let members = match &v.kind {
        JsonKind::Object(m) => m,
        _ => {
            errors.push((
                v.start,
                format!("expected an object, found {}", v.type_name()),
            ));
            return out;
        }
    };
    for (key, key_at, value) in members {
        match shape(parent, key) {
            Some(labels) => {
                // A block may be written once or as a list of objects.
                let bodies: Vec<&Json> = match &value.kind {
                    JsonKind::Array(items) => items.iter().collect(),
                    _ => vec![value],
                };
                for b in bodies {
                    json_block(key, *key_at, b, labels, Vec::new(), shape, errors, &mut out);
                }
            }
            None => out.push(Item {
                name: key.clone(),
                span: *key_at..*key_at,
                kind: Kind::Attr(json_value(value)),
            }),
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn json_block(
    name: &str,
    at: usize,
    v: &Json,
    labels_left: usize,
    labels: Vec<Label>,
    shape: Shape,
    errors: &mut Vec<JsonErr>,
    out: &mut Vec<Item>,
) {
    if labels_left == 0 {
        out.push(Item {
            name: name.to_string(),
            span: at..at,
            kind: Kind::Block {
                labels,
                body: json_body(v, name, shape, errors),
            },
        });
        return;
    }
    let JsonKind::Object(members) = &v.kind else {
        errors.push((
            v.start,
            format!(
                "{name:?} expects an object keyed by its label, found {}",
                v.type_name()
            ),
        ));
        return;
    };
    for (label, label_at, inner) in members {
        let mut labels = labels.clone();
        labels.push(Label {
            text: label.clone(),
            span: *label_at..*label_at,
        });
        json_block(name, at, inner, labels_left - 1, labels, shape, errors, out);
    }
}

fn json_value(v: &Json) -> Value {
    let span = v.start..v.start;
    match &v.kind {
        JsonKind::Str(s) => Value::Str(s.clone(), span),
        JsonKind::Array(items) => Value::List(items.iter().map(json_value).collect(), span),
        _ => Value::Other(v.type_name(), span),
    }
}

/// A JSON value with the byte offset where it starts; object members keep their order
/// and the offset of their key.
struct Json {
    start: usize,
    kind: JsonKind,
}

enum JsonKind {
    Null,
    Bool,
    Number,
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, usize, Json)>),
}

impl Json {
    fn type_name(&self) -> &'static str {
        match self.kind {
            JsonKind::Null => "null",
            JsonKind::Bool => "a bool",
            JsonKind::Number => "a number",
            JsonKind::Str(_) => "a string",
            JsonKind::Array(_) => "a list",
            JsonKind::Object(_) => "an object",
        }
    }
}

struct JsonParser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn document(&mut self) -> Result<Json, JsonErr> {
        let v = self.value(0)?;
        self.ws();
        if self.pos < self.src.len() {
            return Err((self.pos, "invalid JSON: trailing characters".into()));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonErr> {
        if depth > MAX_NESTING {
            return Err((
                self.pos,
                format!("nesting deeper than {MAX_NESTING} levels"),
            ));
        }
        self.ws();
        let start = self.pos;
        let kind = match self.src.get(self.pos) {
            None => return Err((start, "invalid JSON: unexpected end of input".into())),
            Some(b'{') => {
                self.pos += 1;
                let mut members = Vec::new();
                self.ws();
                if self.src.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.ws();
                        let key_at = self.pos;
                        if self.src.get(self.pos) != Some(&b'"') {
                            return Err((key_at, "invalid JSON: expected a quoted key".into()));
                        }
                        let key = self.string()?;
                        self.ws();
                        if self.src.get(self.pos) != Some(&b':') {
                            return Err((self.pos, "invalid JSON: expected ':'".into()));
                        }
                        self.pos += 1;
                        let v = self.value(depth + 1)?;
                        members.push((key, key_at, v));
                        self.ws();
                        match self.src.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => {
                                return Err((self.pos, "invalid JSON: expected ',' or '}'".into()))
                            }
                        }
                    }
                }
                JsonKind::Object(members)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.src.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.ws();
                        match self.src.get(self.pos) {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => {
                                return Err((self.pos, "invalid JSON: expected ',' or ']'".into()))
                            }
                        }
                    }
                }
                JsonKind::Array(items)
            }
            Some(b'"') => JsonKind::Str(self.string()?),
            Some(b't') => self.word("true", JsonKind::Bool)?,
            Some(b'f') => self.word("false", JsonKind::Bool)?,
            Some(b'n') => self.word("null", JsonKind::Null)?,
            Some(b'-' | b'0'..=b'9') => {
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') =
                    self.src.get(self.pos)
                {
                    self.pos += 1;
                }
                let text = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
                if serde_json::from_str::<serde_json::Number>(text).is_err() {
                    return Err((start, format!("invalid JSON: bad number {text:?}")));
                }
                JsonKind::Number
            }
            Some(_) => return Err((start, "invalid JSON: unexpected character".into())),
        };
        Ok(Json { start, kind })
    }

    fn word(&mut self, w: &str, kind: JsonKind) -> Result<JsonKind, JsonErr> {
        if self.src[self.pos..].starts_with(w.as_bytes()) {
            self.pos += w.len();
            Ok(kind)
        } else {
            Err((self.pos, "invalid JSON: unexpected word".into()))
        }
    }

    /// A string at `pos` (which is a quote); serde_json decodes the escapes.
    fn string(&mut self) -> Result<String, JsonErr> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.src.get(self.pos) {
                None => return Err((start, "invalid JSON: unterminated string".into())),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => self.pos += 2,
                Some(c) if *c < 0x20 => {
                    return Err((self.pos, "invalid JSON: control character in string".into()))
                }
                Some(_) => self.pos += 1,
            }
        }
        let raw = self
            .src
            .get(start..self.pos)
            .ok_or((start, "invalid JSON: unterminated string".to_string()))?;
        let raw = std::str::from_utf8(raw)
            .map_err(|_| (start, "invalid JSON: string is not UTF-8".to_string()))?;
        serde_json::from_str::<String>(raw)
            .map_err(|e| (start, format!("invalid JSON string: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(parent: &str, name: &str) -> Option<usize> {
        match (parent, name) {
            ("", "namespace") => Some(1),
            ("", "node") => Some(0),
            _ => None,
        }
    }

    #[test]
    fn json_blocks_peel_their_labels() {
        let items = parse_json(
            r#"{"namespace": {"default": {"policy": "read"}}, "node": {"policy": "write"}}"#,
            shape,
        )
        .unwrap();
        assert_eq!(items.len(), 2);
        let Kind::Block { labels, body } = &items[0].kind else {
            panic!("not a block")
        };
        assert_eq!(labels[0].text, "default");
        assert_eq!(body[0].name, "policy");
    }

    #[test]
    fn json_errors_carry_positions() {
        let e = parse_json("{\n  \"node\": {\"policy\": }\n}", shape).unwrap_err();
        assert_eq!((e.line, e.column), (2, 22));
        let e = parse_json("[1, 2", shape).unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let deep = "[".repeat(100_000);
        assert!(parse_hcl(&format!("a = {deep}")).is_err());
        assert!(parse_json(&deep, shape).is_err());
    }
}
