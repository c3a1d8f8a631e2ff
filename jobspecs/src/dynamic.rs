//! `dynamic "port" { for_each = ..., iterator = p, labels = [...], content { ... } }`:
//! HCL's generated blocks, expanded before lowering so that every block kind takes them.
//!
//! The job block is copied, and each dynamic block in it is replaced by one block per
//! element of `for_each`. Inside the copies, attributes that use the iterator are
//! evaluated right away and replaced by their value. The value is parsed back at the
//! byte offset of the expression it replaces, so later messages about it (a wrong type,
//! a duplicate label) still point at the right line and column.

use crate::reader::Reader;
use crate::schema;
use crate::value::{to_str, type_name, Value};
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Body, Structure};
use hcl_edit::visit::{self, Visit};
use hcl_edit::Span;
use std::ops::Range;

/// Names bound while expanding: one iterator object per enclosing dynamic block.
type Frame = Vec<(String, Value)>;

impl Reader<'_> {
    /// Expands every `dynamic` block in `body` (recursively), in place.
    pub fn expand_dynamic(&mut self, body: &mut Body) {
        self.expand_body(body, &Vec::new());
    }

    fn expand_body(&mut self, body: &mut Body, frame: &Frame) {
        let names: Vec<&str> = frame.iter().map(|(n, _)| n.as_str()).collect();
        let mut i = 0;
        while i < body.len() {
            let Some(s) = body.get_mut(i) else { break };
            match s {
                Structure::Attribute(a) => {
                    if names.is_empty() || !refers_to(&a.value, &names) {
                        i += 1;
                        continue;
                    }
                    match self.scope.eval_with(&a.value, frame) {
                        Ok(v) => {
                            a.value = literal_at(&v, a.value.span());
                            i += 1;
                        }
                        Err(e) => {
                            if !e.is_reported() {
                                let span = e.span.or_else(|| a.value.span());
                                let msg = format!("{}: {}", a.key.as_str(), e.message);
                                self.error(span, "", msg);
                            }
                            body.remove(i);
                        }
                    }
                }
                Structure::Block(b) if b.ident.as_str() == "dynamic" => {
                    let b = b.clone();
                    body.remove(i);
                    for generated in self.generate(&b, frame) {
                        body.insert(i, generated);
                        i += 1;
                    }
                }
                Structure::Block(b) => {
                    self.expand_body(&mut b.body, frame);
                    i += 1;
                }
            }
        }
    }

    /// The blocks one `dynamic` block stands for.
    fn generate(&mut self, b: &Block, frame: &Frame) -> Vec<Block> {
        let Some(kind) = self.label(b, "") else {
            return Vec::new();
        };
        let path = format!("dynamic {kind:?}");
        if !is_identifier(&kind) {
            self.error(
                b.labels[0].span(),
                &path,
                format!("{kind:?} is not a block name"),
            );
            return Vec::new();
        }
        let (attrs, blocks) = self.items(&b.body, &path, &schema::DYNAMIC);
        let mut iterator = kind.clone();
        let mut for_each = None;
        let mut labels = None;
        for a in attrs {
            match a.key.as_str() {
                "for_each" => for_each = Some(a),
                "labels" => labels = Some(a),
                "iterator" => match &a.value {
                    Expression::Variable(v) => iterator = v.value().to_string(),
                    _ => self.error(
                        a.value.span(),
                        &path,
                        "iterator must be a bare name, like `iterator = p`",
                    ),
                },
                _ => {}
            }
        }
        let content = match blocks.as_slice() {
            [one] => *one,
            [] => {
                self.error(
                    b.ident.span(),
                    &path,
                    "a dynamic block needs a `content { ... }` block",
                );
                return Vec::new();
            }
            [_, extra, ..] => {
                self.error(
                    extra.ident.span(),
                    &path,
                    "a dynamic block takes only one `content` block",
                );
                return Vec::new();
            }
        };
        self.no_label(content, &path);
        let Some(for_each) = for_each else {
            self.error(
                b.ident.span(),
                &path,
                "a dynamic block needs `for_each = <list or map>`",
            );
            return Vec::new();
        };
        let collection = match self.scope.eval_with(&for_each.value, frame) {
            Ok(v) => v,
            Err(e) => {
                if !e.is_reported() {
                    let span = e.span.or_else(|| for_each.value.span());
                    self.error(span, &path, format!("for_each: {}", e.message));
                }
                return Vec::new();
            }
        };
        let elements: Vec<(Value, Value)> = match collection {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i), v))
                .collect(),
            Value::Object(m) => m.into_iter().map(|(k, v)| (Value::String(k), v)).collect(),
            Value::Null => Vec::new(),
            other => {
                self.error(
                    for_each.value.span(),
                    &path,
                    format!(
                        "for_each must be a list, set or map, got {}",
                        type_name(&other)
                    ),
                );
                return Vec::new();
            }
        };
        let at = b.labels[0].span().map(|s| s.start).unwrap_or(0);
        let mut out = Vec::new();
        for (key, value) in elements {
            let mut inner = frame.clone();
            let mut it = serde_json::Map::new();
            it.insert("key".into(), key);
            it.insert("value".into(), value);
            inner.push((iterator.clone(), Value::Object(it)));
            let block_labels = match labels {
                None => Vec::new(),
                Some(a) => match self.scope.eval_with(&a.value, &inner) {
                    Ok(Value::Array(items)) => {
                        match items.iter().map(to_str).collect::<Option<Vec<_>>>() {
                            Some(l) => l,
                            None => {
                                self.error(a.value.span(), &path, "labels must be strings");
                                return out;
                            }
                        }
                    }
                    Ok(other) => {
                        self.error(
                            a.value.span(),
                            &path,
                            format!(
                                "labels must be a list of strings, got {}",
                                type_name(&other)
                            ),
                        );
                        return out;
                    }
                    Err(e) => {
                        if !e.is_reported() {
                            let span = e.span.or_else(|| a.value.span());
                            self.error(span, &path, format!("labels: {}", e.message));
                        }
                        return out;
                    }
                },
            };
            let mut generated = block_at(&kind, &block_labels, at);
            generated.body = content.body.clone();
            self.expand_body(&mut generated.body, &inner);
            out.push(generated);
        }
        out
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether an expression refers to any of `names` as a variable.
fn refers_to(expr: &Expression, names: &[&str]) -> bool {
    struct Roots<'n> {
        names: &'n [&'n str],
        found: bool,
    }
    impl Visit for Roots<'_> {
        fn visit_expr(&mut self, expr: &Expression) {
            if let Expression::Variable(v) = expr {
                self.found |= self.names.contains(&v.value().as_str());
            }
            visit::visit_expr(self, expr);
        }
    }
    let mut r = Roots {
        names,
        found: false,
    };
    r.visit_expr(expr);
    r.found
}

/// Spaces up to `offset`, so that what is parsed after them carries spans in the file.
fn padding(offset: usize) -> String {
    " ".repeat(offset)
}

/// An empty block `kind "label" ... {}` whose name sits at byte `offset` of the file.
fn block_at(kind: &str, labels: &[String], offset: usize) -> Block {
    let mut text = padding(offset);
    text.push_str(kind);
    for l in labels {
        text.push(' ');
        text.push_str(&hcl_string(l));
    }
    text.push_str(" {\n}\n");
    hcl_edit::parser::parse_body(&text)
        .ok()
        .and_then(|b| b.into_blocks().next())
        .unwrap_or_else(|| {
            let mut b = Block::new(hcl_edit::Ident::new_sanitized(kind));
            b.labels = labels
                .iter()
                .map(|l| hcl_edit::structure::BlockLabel::from(l.as_str()))
                .collect();
            b
        })
}

/// `v` as an expression whose span starts where `span` does. Only the body parser
/// records spans, so the value is parsed as an attribute `x=VALUE` placed so that the
/// value starts at the offset.
fn literal_at(v: &Value, span: Option<Range<usize>>) -> Expression {
    let literal = hcl_literal(v);
    let offset = span.map(|s| s.start).unwrap_or(0);
    let text = format!("{}x={literal}\n", padding(offset.saturating_sub(2)));
    hcl_edit::parser::parse_body(&text)
        .ok()
        .and_then(|b| b.into_attributes().next())
        .map(|a| a.value)
        .or_else(|| hcl_edit::parser::parse_expr(&literal).ok())
        .unwrap_or_else(|| Expression::from(v.to_string()))
}

/// HCL source text for a value; strings are escaped so that nothing in them is read as a
/// template again.
fn hcl_literal(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => hcl_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(hcl_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", hcl_string(k), hcl_literal(v)))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn hcl_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_round_trip_without_becoming_templates() {
        let v = serde_json::json!({"a": ["x${NOMAD_PORT}y", 1, true, null], "b\"": "%{ if }\n"});
        let e = literal_at(&v, Some(7..9));
        assert_eq!(e.span().map(|s| s.start), Some(7));
        let scope = crate::eval::Scope::new("", crate::eval::Files::Disabled);
        assert_eq!(scope.eval(&e).unwrap(), v);
    }

    #[test]
    fn generated_blocks_sit_at_the_given_offset() {
        let b = block_at("port", &["http".to_string()], 12);
        assert_eq!(b.ident.span().map(|s| s.start), Some(12));
        assert_eq!(b.labels[0].as_str(), "http");
    }
}
