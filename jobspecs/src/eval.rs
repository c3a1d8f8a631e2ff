//! Evaluation of HCL2 expressions: literals, templates, `var.x`, `local.x`, operators,
//! conditionals, `for` expressions and function calls.
//!
//! Runtime interpolations (`${NOMAD_ALLOC_ID}`, `${attr.kernel.name}`, `${meta.rack}`...)
//! name things only an agent knows; a template keeps them verbatim so the agent can
//! resolve them later.

use crate::diag::suggestion;
use crate::funcs;
use crate::value::{number, to_bool, to_f64, to_str, type_name, Value};
use hcl_edit::expr::{BinaryOperator, Expression, ObjectKey, TraversalOperator, UnaryOperator};
use hcl_edit::template::{Directive, Element, Template};
use hcl_edit::Span;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;

/// An evaluation failure, at the span of the expression that caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    pub span: Option<Range<usize>>,
    pub message: String,
    /// A filesystem function was called where the filesystem is off (`Files::Disabled`).
    pub filesystem_denied: bool,
}

impl EvalError {
    pub fn new(span: Option<Range<usize>>, message: impl Into<String>) -> Self {
        EvalError {
            span,
            message: message.into(),
            filesystem_denied: false,
        }
    }
}

impl EvalError {
    /// An error whose cause was already reported; it adds no message of its own.
    pub fn reported() -> Self {
        EvalError::new(None, "")
    }

    pub fn is_reported(&self) -> bool {
        self.message.is_empty()
    }
}

pub type EvalResult = Result<Value, EvalError>;

/// Names bound by `for` expressions and directives, innermost last.
type Frame = Vec<(String, Value)>;

/// Whether HCL's filesystem functions (`file()` and friends) may read files, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Files {
    /// No filesystem access: what a server parsing a submitted job uses, so that a job
    /// cannot read the server's files. Every filesystem function fails, as in Nomad.
    Disabled,
    /// Relative paths are resolved against this directory (the job file's; an empty path
    /// is the working directory). The CLI reads job files this way.
    RelativeTo(PathBuf),
}

/// Everything an expression may refer to: variables, locals and the job file's directory.
pub struct Scope<'a> {
    src: &'a str,
    /// Whether, and relative to which directory, `file()` reads files.
    pub files: Files,
    vars: BTreeMap<String, Value>,
    /// Variables whose value could not be set (already reported): uses stay quiet.
    failed_vars: BTreeSet<String>,
    locals: BTreeMap<String, &'a Expression>,
    local_values: RefCell<BTreeMap<String, EvalResult>>,
    in_progress: RefCell<BTreeSet<String>>,
}

impl<'a> Scope<'a> {
    pub fn new(src: &'a str, files: Files) -> Self {
        Scope {
            src,
            files,
            vars: BTreeMap::new(),
            failed_vars: BTreeSet::new(),
            locals: BTreeMap::new(),
            local_values: RefCell::new(BTreeMap::new()),
            in_progress: RefCell::new(BTreeSet::new()),
        }
    }

    pub fn set_var(&mut self, name: &str, value: Value) {
        self.vars.insert(name.to_string(), value);
    }

    /// Marks a variable whose value is missing or invalid; its uses fail silently.
    pub fn fail_var(&mut self, name: &str) {
        self.failed_vars.insert(name.to_string());
        self.vars.insert(name.to_string(), Value::Null);
    }

    /// Declares a local; it is evaluated the first time something refers to it.
    pub fn add_local(&mut self, name: &str, expr: &'a Expression) {
        self.locals.insert(name.to_string(), expr);
    }

    pub fn local_names(&self) -> Vec<String> {
        self.locals.keys().cloned().collect()
    }

    /// Evaluates one expression.
    pub fn eval(&self, expr: &Expression) -> EvalResult {
        self.eval_in(expr, &mut Vec::new())
    }

    /// Evaluates one expression with extra names bound (a `dynamic` block's iterator).
    pub fn eval_with(&self, expr: &Expression, bindings: &[(String, Value)]) -> EvalResult {
        self.eval_in(expr, &mut bindings.to_vec())
    }

    /// A variable's value, once set.
    pub fn var_value(&self, name: &str) -> Option<Value> {
        self.vars.get(name).cloned()
    }

    /// The value of a local, evaluating it (once) on first use.
    pub fn local(&self, name: &str, span: Option<Range<usize>>) -> EvalResult {
        if let Some(v) = self.local_values.borrow().get(name) {
            return v.clone();
        }
        let Some(expr) = self.locals.get(name).copied() else {
            let names: Vec<&str> = self.locals.keys().map(String::as_str).collect();
            return Err(EvalError::new(
                span,
                format!("unknown local {name:?}{}", suggestion(name, &names)),
            ));
        };
        if !self.in_progress.borrow_mut().insert(name.to_string()) {
            return Err(EvalError::new(
                span,
                format!("local {name:?} refers to itself"),
            ));
        }
        let result = self.eval(expr);
        self.in_progress.borrow_mut().remove(name);
        self.local_values
            .borrow_mut()
            .insert(name.to_string(), result.clone());
        result
    }

    fn var(&self, name: &str, span: Option<Range<usize>>) -> EvalResult {
        if self.failed_vars.contains(name) {
            return Err(EvalError::reported());
        }
        self.vars.get(name).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
            EvalError::new(
                span,
                format!(
                    "variable {name:?} is not declared; add a `variable {name:?} {{}}` block{}",
                    suggestion(name, &names)
                ),
            )
        })
    }

    fn eval_in(&self, expr: &Expression, frame: &mut Frame) -> EvalResult {
        let span = expr.span();
        match expr {
            Expression::Null(_) => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b.value())),
            Expression::Number(n) => {
                let n = n.value();
                Ok(match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => Value::from(i),
                    (None, Some(f)) => number(f),
                    _ => Value::Null,
                })
            }
            Expression::String(s) => Ok(Value::String(s.value().clone())),
            Expression::Array(items) => items
                .iter()
                .map(|e| self.eval_in(e, frame))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Expression::Object(obj) => {
                let mut out = serde_json::Map::new();
                for (key, value) in obj.iter() {
                    let k = match key {
                        ObjectKey::Ident(id) => id.value().to_string(),
                        ObjectKey::Expression(e) => self.object_key(e, frame)?,
                    };
                    out.insert(k, self.eval_in(value.expr(), frame)?);
                }
                Ok(Value::Object(out))
            }
            Expression::StringTemplate(t) => self.render(t, frame).map(Value::String),
            Expression::HeredocTemplate(h) => self.render(&h.template, frame).map(Value::String),
            Expression::Parenthesis(p) => self.eval_in(p.inner(), frame),
            Expression::Variable(v) => self.variable(v.value().as_str(), span, frame),
            Expression::Conditional(c) => {
                let cond = self.eval_in(&c.cond_expr, frame)?;
                match to_bool(&cond) {
                    Some(true) => self.eval_in(&c.true_expr, frame),
                    Some(false) => self.eval_in(&c.false_expr, frame),
                    None => Err(EvalError::new(
                        c.cond_expr.span(),
                        format!("condition must be a bool, got {}", type_name(&cond)),
                    )),
                }
            }
            Expression::FuncCall(call) => {
                let name = call.name.name.value().as_str();
                let mut args = Vec::with_capacity(call.args.len());
                let mut spans = Vec::with_capacity(call.args.len());
                for a in call.args.iter() {
                    args.push(self.eval_in(a, frame)?);
                    spans.push(a.span());
                }
                if call.args.expand_final() {
                    match args.pop() {
                        Some(Value::Array(rest)) => {
                            let s = spans.pop().flatten();
                            spans.extend(rest.iter().map(|_| s.clone()));
                            args.extend(rest);
                        }
                        _ => {
                            return Err(EvalError::new(
                                span,
                                "the argument before `...` must be a list",
                            ))
                        }
                    }
                }
                funcs::call(self, name, args, &spans, span)
            }
            Expression::Traversal(t) => {
                let mut ops = t.operators.iter().peekable();
                let mut value = match (&t.expr, ops.peek().map(|o| o.value())) {
                    (Expression::Variable(root), Some(TraversalOperator::GetAttr(attr)))
                        if matches!(root.value().as_str(), "var" | "local")
                            && !frame.iter().any(|(n, _)| n == root.value().as_str()) =>
                    {
                        let op_span = ops.next().and_then(|o| o.span());
                        let attr_span = t
                            .expr
                            .span()
                            .map(|s| s.start..op_span.map(|o| o.end).unwrap_or(s.end));
                        if root.value().as_str() == "var" {
                            self.var(attr.value().as_str(), attr_span)?
                        } else {
                            self.local(attr.value().as_str(), attr_span)?
                        }
                    }
                    _ => self.eval_in(&t.expr, frame)?,
                };
                for op in ops {
                    value = self.apply_op(value, op.value(), op.span(), frame)?;
                }
                Ok(value)
            }
            Expression::UnaryOp(u) => {
                let v = self.eval_in(&u.expr, frame)?;
                match u.operator.value() {
                    UnaryOperator::Neg => to_f64(&v).map(|f| number(-f)).ok_or_else(|| {
                        EvalError::new(span, format!("cannot negate a {}", type_name(&v)))
                    }),
                    UnaryOperator::Not => to_bool(&v).map(|b| Value::Bool(!b)).ok_or_else(|| {
                        EvalError::new(span, format!("`!` needs a bool, got {}", type_name(&v)))
                    }),
                }
            }
            Expression::BinaryOp(op) => {
                let lhs = self.eval_in(&op.lhs_expr, frame)?;
                // `&&` and `||` short-circuit, as in HCL.
                match (op.operator.value(), to_bool(&lhs)) {
                    (BinaryOperator::And, Some(false)) => return Ok(Value::Bool(false)),
                    (BinaryOperator::Or, Some(true)) => return Ok(Value::Bool(true)),
                    _ => {}
                }
                let rhs = self.eval_in(&op.rhs_expr, frame)?;
                binary(*op.operator.value(), &lhs, &rhs).map_err(|m| EvalError::new(span, m))
            }
            Expression::ForExpr(f) => {
                let collection = self.eval_in(&f.intro.collection_expr, frame)?;
                let pairs = iterate(&collection).ok_or_else(|| {
                    EvalError::new(
                        f.intro.collection_expr.span(),
                        format!("cannot iterate over a {}", type_name(&collection)),
                    )
                })?;
                let mut list = Vec::new();
                let mut map = serde_json::Map::new();
                for (k, v) in pairs {
                    let depth = frame.len();
                    if let Some(kv) = &f.intro.key_var {
                        frame.push((kv.value().to_string(), k));
                    }
                    frame.push((f.intro.value_var.value().to_string(), v));
                    let result = self.for_item(f, frame, &mut list, &mut map);
                    frame.truncate(depth);
                    result?;
                }
                Ok(if f.key_expr.is_some() {
                    Value::Object(map)
                } else {
                    Value::Array(list)
                })
            }
        }
    }

    fn for_item(
        &self,
        f: &hcl_edit::expr::ForExpr,
        frame: &mut Frame,
        list: &mut Vec<Value>,
        map: &mut serde_json::Map<String, Value>,
    ) -> Result<(), EvalError> {
        if let Some(cond) = &f.cond {
            let c = self.eval_in(&cond.expr, frame)?;
            if to_bool(&c) != Some(true) {
                return Ok(());
            }
        }
        let value = self.eval_in(&f.value_expr, frame)?;
        match &f.key_expr {
            Some(k) => {
                let key = self.eval_in(k, frame)?;
                let key = to_str(&key).ok_or_else(|| {
                    EvalError::new(k.span(), "a for expression's key must be a string")
                })?;
                if f.grouping {
                    let entry = map.entry(key).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(items) = entry {
                        items.push(value);
                    }
                } else {
                    map.insert(key, value);
                }
            }
            None => list.push(value),
        }
        Ok(())
    }

    fn object_key(&self, e: &Expression, frame: &mut Frame) -> Result<String, EvalError> {
        // A bare name as key is the name itself, as in `{ foo = 1 }`.
        if let Expression::Variable(v) = e {
            return Ok(v.value().to_string());
        }
        let k = self.eval_in(e, frame)?;
        to_str(&k).ok_or_else(|| {
            EvalError::new(
                e.span(),
                format!("object keys must be strings, got {}", type_name(&k)),
            )
        })
    }

    fn variable(&self, name: &str, span: Option<Range<usize>>, frame: &Frame) -> EvalResult {
        if let Some((_, v)) = frame.iter().rev().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        match name {
            "var" => Ok(Value::Object(
                self.vars
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
            "local" => {
                let mut out = serde_json::Map::new();
                for name in self.locals.keys() {
                    out.insert(name.clone(), self.local(name, span.clone())?);
                }
                Ok(Value::Object(out))
            }
            _ => Err(EvalError::new(
                span,
                format!(
                    "unknown variable {name:?}: use `var.NAME` or `local.NAME`, and quote \
                     runtime values such as \"${{{name}}}\" so the agent resolves them"
                ),
            )),
        }
    }

    fn apply_op(
        &self,
        value: Value,
        op: &TraversalOperator,
        span: Option<Range<usize>>,
        frame: &mut Frame,
    ) -> EvalResult {
        let key = match op {
            TraversalOperator::GetAttr(a) => Value::String(a.value().to_string()),
            TraversalOperator::Index(e) => self.eval_in(e, frame)?,
            TraversalOperator::LegacyIndex(i) => Value::from(*i.value()),
            TraversalOperator::AttrSplat(_) | TraversalOperator::FullSplat(_) => {
                return Err(EvalError::new(span, "splat expressions are not supported"))
            }
        };
        index(&value, &key).map_err(|m| EvalError::new(span, m))
    }

    /// Renders a template; runtime interpolations stay as written.
    pub fn render(&self, template: &Template, frame: &mut Frame) -> Result<String, EvalError> {
        let mut out = String::new();
        for element in template.iter() {
            match element {
                Element::Literal(s) => out.push_str(s.value()),
                Element::Interpolation(i) => {
                    if self.is_runtime(&i.expr, frame) {
                        let text = i
                            .expr
                            .span()
                            .and_then(|s| self.src.get(s))
                            .map(str::trim)
                            .unwrap_or("");
                        out.push_str("${");
                        out.push_str(text);
                        out.push('}');
                        continue;
                    }
                    let v = self.eval_in(&i.expr, frame)?;
                    out.push_str(&to_str(&v).ok_or_else(|| {
                        EvalError::new(
                            i.expr.span(),
                            format!(
                                "cannot interpolate a {} into a string; use jsonencode() or join()",
                                type_name(&v)
                            ),
                        )
                    })?);
                }
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(d) => {
                        let c = self.eval_in(&d.if_expr.cond_expr, frame)?;
                        if to_bool(&c).ok_or_else(|| {
                            EvalError::new(d.if_expr.cond_expr.span(), "condition must be a bool")
                        })? {
                            out.push_str(&self.render(&d.if_expr.template, frame)?);
                        } else if let Some(e) = &d.else_expr {
                            out.push_str(&self.render(&e.template, frame)?);
                        }
                    }
                    Directive::For(d) => {
                        let f = &d.for_expr;
                        let coll = self.eval_in(&f.collection_expr, frame)?;
                        let pairs = iterate(&coll).ok_or_else(|| {
                            EvalError::new(
                                f.collection_expr.span(),
                                "cannot iterate over this value",
                            )
                        })?;
                        for (k, v) in pairs {
                            let depth = frame.len();
                            if let Some(kv) = &f.key_var {
                                frame.push((kv.value().to_string(), k));
                            }
                            frame.push((f.value_var.value().to_string(), v));
                            let r = self.render(&f.template, frame);
                            frame.truncate(depth);
                            out.push_str(&r?);
                        }
                    }
                },
            }
        }
        Ok(out)
    }

    /// Whether an interpolation refers to something only the agent knows at run time:
    /// any root name other than `var`, `local` and `for` variables.
    fn is_runtime(&self, expr: &Expression, frame: &Frame) -> bool {
        let mut roots = Vec::new();
        collect_roots(expr, &mut roots);
        roots
            .iter()
            .any(|r| !matches!(r.as_str(), "var" | "local") && !frame.iter().any(|(n, _)| n == r))
    }
}

/// The root names an expression refers to (approximate inside `for` expressions).
fn collect_roots(expr: &Expression, out: &mut Vec<String>) {
    match expr {
        Expression::Variable(v) => out.push(v.value().to_string()),
        Expression::Traversal(t) => {
            collect_roots(&t.expr, out);
            for op in &t.operators {
                if let TraversalOperator::Index(e) = op.value() {
                    collect_roots(e, out);
                }
            }
        }
        Expression::Parenthesis(p) => collect_roots(p.inner(), out),
        Expression::FuncCall(c) => c.args.iter().for_each(|a| collect_roots(a, out)),
        Expression::BinaryOp(b) => {
            collect_roots(&b.lhs_expr, out);
            collect_roots(&b.rhs_expr, out);
        }
        Expression::UnaryOp(u) => collect_roots(&u.expr, out),
        Expression::Conditional(c) => {
            collect_roots(&c.cond_expr, out);
            collect_roots(&c.true_expr, out);
            collect_roots(&c.false_expr, out);
        }
        Expression::Array(a) => a.iter().for_each(|e| collect_roots(e, out)),
        Expression::Object(o) => o.iter().for_each(|(_, v)| collect_roots(v.expr(), out)),
        _ => {}
    }
}

/// Key/value pairs of a list (index, item) or an object (key, value).
fn iterate(v: &Value) -> Option<Vec<(Value, Value)>> {
    match v {
        Value::Array(items) => Some(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i), v.clone()))
                .collect(),
        ),
        Value::Object(m) => Some(
            m.iter()
                .map(|(k, v)| (Value::String(k.clone()), v.clone()))
                .collect(),
        ),
        _ => None,
    }
}

/// `value[key]` for lists and objects.
pub fn index(value: &Value, key: &Value) -> Result<Value, String> {
    match value {
        Value::Object(m) => {
            let k = to_str(key).ok_or("an object key must be a string")?;
            m.get(&k).cloned().ok_or_else(|| {
                let names: Vec<&str> = m.keys().map(String::as_str).collect();
                format!("no attribute {k:?}{}", suggestion(&k, &names))
            })
        }
        Value::Array(items) => {
            let i = crate::value::to_i64(key).ok_or("a list index must be a number")?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| format!("index {i} is out of range for a list of {}", items.len()))
        }
        other => Err(format!("cannot index into a {}", type_name(other))),
    }
}

fn binary(op: BinaryOperator, lhs: &Value, rhs: &Value) -> Result<Value, String> {
    use BinaryOperator::*;
    let nums = || -> Result<(f64, f64), String> {
        match (to_f64(lhs), to_f64(rhs)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!(
                "operator `{}` needs numbers, got {} and {}",
                op.as_str(),
                type_name(lhs),
                type_name(rhs)
            )),
        }
    };
    let bools = || -> Result<(bool, bool), String> {
        match (to_bool(lhs), to_bool(rhs)) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(format!("operator `{}` needs bools", op.as_str())),
        }
    };
    match op {
        Eq => Ok(Value::Bool(lhs == rhs)),
        NotEq => Ok(Value::Bool(lhs != rhs)),
        Less => nums().map(|(a, b)| Value::Bool(a < b)),
        LessEq => nums().map(|(a, b)| Value::Bool(a <= b)),
        Greater => nums().map(|(a, b)| Value::Bool(a > b)),
        GreaterEq => nums().map(|(a, b)| Value::Bool(a >= b)),
        Plus => nums().map(|(a, b)| number(a + b)),
        Minus => nums().map(|(a, b)| number(a - b)),
        Mul => nums().map(|(a, b)| number(a * b)),
        Div => nums().and_then(|(a, b)| {
            if b == 0.0 {
                Err("division by zero".to_string())
            } else {
                Ok(number(a / b))
            }
        }),
        Mod => nums().and_then(|(a, b)| {
            if b == 0.0 {
                Err("modulo by zero".to_string())
            } else {
                Ok(number(a % b))
            }
        }),
        And => bools().map(|(a, b)| Value::Bool(a && b)),
        Or => bools().map(|(a, b)| Value::Bool(a || b)),
    }
}
