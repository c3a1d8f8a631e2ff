//! Reading blocks and typed attributes out of the HCL tree, collecting every problem as a
//! positioned diagnostic instead of stopping at the first one.

use crate::diag::{suggestion, Diagnostic, SourceMap};
use crate::duration::parse_duration;
use crate::eval::Scope;
use crate::schema::Schema;
use crate::value::{is_huge_whole, to_bool, to_i64, to_str, type_name, Value};
use hcl_edit::structure::{Attribute, Block, Body, Structure};
use hcl_edit::Span;
use std::collections::BTreeMap;
use std::ops::Range;

/// Walks the tree with an expression scope and collects errors and warnings.
pub struct Reader<'a> {
    pub sm: &'a SourceMap<'a>,
    pub scope: Scope<'a>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    pub fn new(sm: &'a SourceMap<'a>, scope: Scope<'a>) -> Self {
        Reader {
            sm,
            scope,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// An error at `span`, prefixed with the block path ("in job "web" > group "api": ...").
    pub fn error(&mut self, span: Option<Range<usize>>, path: &str, message: impl AsRef<str>) {
        let message = if path.is_empty() {
            message.as_ref().to_string()
        } else {
            format!("in {path}: {}", message.as_ref())
        };
        self.errors.push(self.sm.at(span, message));
    }

    pub fn warning(&mut self, span: Option<Range<usize>>, path: &str, message: impl AsRef<str>) {
        let message = if path.is_empty() {
            message.as_ref().to_string()
        } else {
            format!("in {path}: {}", message.as_ref())
        };
        self.warnings.push(self.sm.at(span, message));
    }

    /// The attributes and blocks of `body` that `schema` reads, in source order. Unknown
    /// names are errors with a suggestion; Nomad names Drover ignores are warnings;
    /// an attribute set twice is an error.
    pub fn items<'b>(
        &mut self,
        body: &'b Body,
        path: &str,
        schema: &Schema,
    ) -> (Vec<&'b Attribute>, Vec<&'b Block>) {
        let mut attrs: Vec<&'b Attribute> = Vec::new();
        let mut blocks = Vec::new();
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    let name = a.key.as_str();
                    if schema.attrs.contains(&name) {
                        if attrs.iter().any(|x| x.key.as_str() == name) {
                            self.error(
                                a.key.span(),
                                path,
                                format!("attribute {name:?} is set more than once"),
                            );
                        } else {
                            attrs.push(a);
                        }
                    } else if schema.ignored.contains(&name) {
                        self.ignored(a.key.span(), path, name);
                    } else if schema.blocks.contains(&name) {
                        self.error(
                            a.key.span(),
                            path,
                            format!(
                                "{name:?} is a block, not an attribute: write `{name} {{ ... }}`"
                            ),
                        );
                    } else {
                        self.error(
                            a.key.span(),
                            path,
                            format!(
                                "unknown attribute {name:?}{}",
                                suggestion(name, &schema.all_names())
                            ),
                        );
                    }
                }
                Structure::Block(b) => {
                    let name = b.ident.as_str();
                    if schema.blocks.contains(&name) {
                        blocks.push(b);
                    } else if schema.ignored.contains(&name) {
                        self.ignored(b.ident.span(), path, name);
                    } else if schema.attrs.contains(&name) {
                        self.error(
                            b.ident.span(),
                            path,
                            format!("{name:?} is an attribute, not a block: write `{name} = ...`"),
                        );
                    } else {
                        self.error(
                            b.ident.span(),
                            path,
                            format!(
                                "unknown block {name:?}{}",
                                suggestion(name, &schema.all_names())
                            ),
                        );
                    }
                }
            }
        }
        (attrs, blocks)
    }

    fn ignored(&mut self, span: Option<Range<usize>>, path: &str, name: &str) {
        self.warning(
            span,
            path,
            format!("{name:?} is not supported by Drover yet and is ignored"),
        );
    }

    /// The block's single label, or an error when it has none or several.
    pub fn label(&mut self, b: &Block, path: &str) -> Option<String> {
        match b.labels.as_slice() {
            [one] => Some(one.as_str().to_string()),
            labels => {
                let what = b.ident.as_str();
                self.error(
                    b.ident.span(),
                    path,
                    format!(
                        "a {what} block needs exactly one label, like `{what} \"name\" {{ ... }}`, found {}",
                        labels.len()
                    ),
                );
                None
            }
        }
    }

    /// Errors when a block that takes no label has one.
    pub fn no_label(&mut self, b: &Block, path: &str) {
        if let Some(l) = b.labels.first() {
            self.error(
                b.ident.span(),
                path,
                format!(
                    "a {} block takes no label, found {:?}",
                    b.ident.as_str(),
                    l.as_str()
                ),
            );
        }
    }

    /// Evaluates an attribute's value.
    pub fn value(&mut self, a: &Attribute, path: &str) -> Option<Value> {
        match self.scope.eval(&a.value) {
            Ok(v) => Some(v),
            Err(e) if e.is_reported() => None,
            Err(e) => {
                let span = e.span.or_else(|| a.value.span());
                self.error(span, path, format!("{}: {}", a.key.as_str(), e.message));
                None
            }
        }
    }

    fn wrong_type(&mut self, a: &Attribute, path: &str, want: &str, got: &Value) {
        self.error(
            a.value.span(),
            path,
            format!(
                "attribute {:?} must be {want}, got {} {}",
                a.key.as_str(),
                type_name(got),
                short(got)
            ),
        );
    }

    pub fn string(&mut self, a: &Attribute, path: &str) -> Option<String> {
        let v = self.value(a, path)?;
        match to_str(&v) {
            Some(s) => Some(s),
            None => {
                self.wrong_type(a, path, "a string", &v);
                None
            }
        }
    }

    /// A string that must be one of `allowed`.
    pub fn one_of(&mut self, a: &Attribute, path: &str, allowed: &[&str]) -> Option<String> {
        let s = self.string(a, path)?;
        if allowed.contains(&s.as_str()) {
            Some(s)
        } else {
            self.error(
                a.value.span(),
                path,
                format!(
                    "invalid {} {s:?}{}",
                    a.key.as_str(),
                    suggestion(&s, allowed)
                ),
            );
            None
        }
    }

    pub fn int(&mut self, a: &Attribute, path: &str) -> Option<i64> {
        let v = self.value(a, path)?;
        match to_i64(&v) {
            Some(i) => Some(i),
            None if is_huge_whole(&v) => {
                self.error(
                    a.value.span(),
                    path,
                    format!(
                        "attribute {:?} is out of range: {} does not fit in a 64-bit whole number",
                        a.key.as_str(),
                        short(&v)
                    ),
                );
                None
            }
            None => {
                self.wrong_type(a, path, "a whole number", &v);
                None
            }
        }
    }

    /// A whole number at most `max` (the lower bound is checked by the caller, with its
    /// own sentence); above it, an error at the value.
    pub fn int_max(&mut self, a: &Attribute, path: &str, max: i64) -> Option<i64> {
        let v = self.int(a, path)?;
        if v > max {
            self.error(
                a.value.span(),
                path,
                format!("{} {v} is more than the limit of {max}", a.key.as_str()),
            );
            return None;
        }
        Some(v)
    }

    /// A whole number in `range`; outside it, an error at the value saying the range.
    pub fn int_in(
        &mut self,
        a: &Attribute,
        path: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Option<i64> {
        let v = self.int(a, path)?;
        if range.contains(&v) {
            Some(v)
        } else {
            self.error(
                a.value.span(),
                path,
                format!(
                    "{} {v} is out of range: it must be between {} and {}",
                    a.key.as_str(),
                    range.start(),
                    range.end()
                ),
            );
            None
        }
    }

    pub fn bool(&mut self, a: &Attribute, path: &str) -> Option<bool> {
        let v = self.value(a, path)?;
        match to_bool(&v) {
            Some(b) => Some(b),
            None => {
                self.wrong_type(a, path, "a bool", &v);
                None
            }
        }
    }

    /// A duration string ("30s") in nanoseconds; a bare number is taken as nanoseconds.
    /// No duration in a job may be negative or longer than `api::MAX_DURATION`.
    pub fn duration(&mut self, a: &Attribute, path: &str) -> Option<i64> {
        let v = self.value(a, path)?;
        let ns = match &v {
            Value::String(s) => match parse_duration(s) {
                Ok(ns) => ns,
                Err(m) => {
                    self.error(a.value.span(), path, format!("{}: {m}", a.key.as_str()));
                    return None;
                }
            },
            Value::Number(_) => match to_i64(&v) {
                Some(ns) => ns,
                None => {
                    self.error(
                        a.value.span(),
                        path,
                        format!(
                            "{}: {} is not a whole number of nanoseconds in range; \
                             write a duration string like \"30s\"",
                            a.key.as_str(),
                            short(&v)
                        ),
                    );
                    return None;
                }
            },
            _ => {
                self.wrong_type(a, path, "a duration string like \"30s\"", &v);
                return None;
            }
        };
        if ns < 0 {
            self.error(
                a.value.span(),
                path,
                format!(
                    "{}: {} is negative; durations must be 0 or more",
                    a.key.as_str(),
                    short(&v)
                ),
            );
            None
        } else if ns > api::MAX_DURATION {
            self.error(
                a.value.span(),
                path,
                format!(
                    "{}: {} is longer than the limit of 876000h (100 years)",
                    a.key.as_str(),
                    short(&v)
                ),
            );
            None
        } else {
            Some(ns)
        }
    }

    pub fn string_list(&mut self, a: &Attribute, path: &str) -> Option<Vec<String>> {
        let v = self.value(a, path)?;
        let list = match &v {
            Value::Array(items) => items.iter().map(to_str).collect::<Option<Vec<_>>>(),
            _ => None,
        };
        if list.is_none() {
            self.wrong_type(a, path, "a list of strings", &v);
        }
        list
    }

    /// A map of strings from an attribute (`meta = { ... }`).
    pub fn string_map(&mut self, a: &Attribute, path: &str) -> Option<BTreeMap<String, String>> {
        let v = self.value(a, path)?;
        let map = match &v {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| to_str(v).map(|s| (k.clone(), s)))
                .collect::<Option<BTreeMap<_, _>>>(),
            _ => None,
        };
        if map.is_none() {
            self.wrong_type(a, path, "a map of strings", &v);
        }
        map
    }

    /// A map of strings from a block (`meta { key = "value" }`).
    pub fn string_map_block(&mut self, b: &Block, path: &str) -> BTreeMap<String, String> {
        self.no_label(b, path);
        let path = format!("{path} > {}", b.ident.as_str());
        let mut out = BTreeMap::new();
        for s in b.body.iter() {
            match s {
                Structure::Attribute(a) => {
                    if let Some(v) = self.value(a, &path) {
                        match to_str(&v) {
                            Some(s) => {
                                out.insert(a.key.as_str().to_string(), s);
                            }
                            None => self.wrong_type(a, &path, "a string", &v),
                        }
                    }
                }
                Structure::Block(inner) => self.error(
                    inner.ident.span(),
                    &path,
                    format!(
                        "unexpected block {:?}: only `key = \"value\"` pairs go here",
                        inner.ident.as_str()
                    ),
                ),
            }
        }
        out
    }

    /// A free-form body (a task's `config`) as a JSON object: attributes become values,
    /// nested blocks objects, and repeated blocks arrays of objects.
    pub fn free_form(&mut self, body: &Body, path: &str) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        let mut repeated: BTreeMap<String, usize> = BTreeMap::new();
        for s in body.iter() {
            if let Structure::Block(b) = s {
                *repeated.entry(b.ident.as_str().to_string()).or_default() += 1;
            }
        }
        for s in body.iter() {
            match s {
                Structure::Attribute(a) => {
                    if let Some(v) = self.value(a, path) {
                        out.insert(a.key.as_str().to_string(), v);
                    }
                }
                Structure::Block(b) => {
                    let name = b.ident.as_str().to_string();
                    let inner_path = format!("{path} > {name}");
                    let mut value = Value::Object(self.free_form(&b.body, &inner_path));
                    for label in b.labels.iter().rev() {
                        let mut m = serde_json::Map::new();
                        m.insert(label.as_str().to_string(), value);
                        value = Value::Object(m);
                    }
                    if repeated.get(&name).copied().unwrap_or(0) > 1 {
                        let entry = out.entry(name).or_insert_with(|| Value::Array(vec![]));
                        if let Value::Array(items) = entry {
                            items.push(value);
                        }
                    } else {
                        out.insert(name, value);
                    }
                }
            }
        }
        out
    }
}

/// A value shortened for messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}
