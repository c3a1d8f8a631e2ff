//! Executes a parsed template over JSON values, as Go's text/template executes over
//! interface values: truthiness, fields of maps, sorted map ranges, variables in scopes,
//! pipelines that pass the last value as the final argument, and Go's `%v` printing.
//! The builtins Go's templates always have (`and`, `or`, `not`, `len`, `index`, `print*`,
//! `eq`... ) live here; everything else comes from the caller's function table.

use super::lang::{Arg, Branches, Cmd, Node, Pipe};
use serde_json::Value;
use std::fmt::Write as _;

/// A function a template may call; `Err` is a sentence.
pub type Func<'a> = dyn Fn(&[Value]) -> Result<Value, String> + 'a;

/// Functions besides the builtins, looked up by name.
pub trait Funcs {
    fn get(&self, name: &str) -> Option<&Func<'_>>;
}

/// The builtins Go's templates have without a function map.
pub const BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "print", "printf", "println", "eq", "ne", "lt", "le", "gt",
    "ge",
];

/// An execution error, with the line of the action it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "execute error at line {}: {}", self.line, self.message)
    }
}

/// The first function a template names that neither the builtins nor `known` have.
pub fn unknown_function(nodes: &[Node], known: &dyn Fn(&str) -> bool) -> Option<(usize, String)> {
    fn in_pipe(p: &Pipe, known: &dyn Fn(&str) -> bool) -> Option<(usize, String)> {
        for c in &p.cmds {
            for a in &c.args {
                match a {
                    Arg::Func(f) if !BUILTINS.contains(&f.as_str()) && !known(f) => {
                        return Some((p.line, f.clone()))
                    }
                    Arg::Sub(sub, _) => {
                        if let Some(u) = in_pipe(sub, known) {
                            return Some(u);
                        }
                    }
                    _ => {}
                }
            }
        }
        None
    }
    for n in nodes {
        let found = match n {
            Node::Text(_) => None,
            Node::Action(p) => in_pipe(p, known),
            Node::If(b) | Node::Range(b) | Node::With(b) => in_pipe(&b.pipe, known)
                .or_else(|| unknown_function(&b.body, known))
                .or_else(|| unknown_function(&b.otherwise, known)),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Renders `nodes` with `data` as dot.
pub fn execute(
    nodes: &[Node],
    data: &Value,
    funcs: &dyn Funcs,
    missing_key_error: bool,
) -> Result<String, ExecError> {
    let mut ex = Exec {
        funcs,
        missing_key_error,
        vars: vec![("".to_string(), data.clone())],
        out: String::new(),
        line: 1,
        steps: 0,
    };
    ex.walk(nodes, data)?;
    Ok(ex.out)
}

/// Rendered output is capped so a runaway `range` cannot fill the disk.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

/// Actions, range iterations and calls one render may take, so nested ranges cannot
/// keep the agent busy for ever.
pub const MAX_STEPS: u64 = 2_000_000;

/// The longest list a function may return.
const MAX_LIST: usize = 1_000_000;

struct Exec<'f> {
    funcs: &'f dyn Funcs,
    missing_key_error: bool,
    vars: Vec<(String, Value)>,
    out: String,
    line: usize,
    steps: u64,
}

impl Exec<'_> {
    fn fail<T>(&self, message: impl Into<String>) -> Result<T, ExecError> {
        Err(ExecError {
            line: self.line,
            message: message.into(),
        })
    }

    /// Counts one step against [`MAX_STEPS`].
    fn step(&mut self) -> Result<(), ExecError> {
        self.steps += 1;
        if self.steps > MAX_STEPS {
            return self.fail(format!(
                "the template takes more than {MAX_STEPS} steps to render"
            ));
        }
        Ok(())
    }

    fn walk(&mut self, nodes: &[Node], dot: &Value) -> Result<(), ExecError> {
        for n in nodes {
            self.step()?;
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    self.line = p.line;
                    let v = self.pipe(p, dot)?;
                    if p.vars.is_empty() {
                        self.out.push_str(&show(&v));
                    }
                }
                Node::If(b) => {
                    let mark = self.vars.len();
                    self.line = b.line;
                    let v = self.pipe(&b.pipe, dot)?;
                    let res = if truthy(&v) {
                        self.walk(&b.body, dot)
                    } else {
                        self.walk(&b.otherwise, dot)
                    };
                    self.vars.truncate(mark);
                    res?;
                }
                Node::With(b) => {
                    let mark = self.vars.len();
                    self.line = b.line;
                    let v = self.pipe(&b.pipe, dot)?;
                    let res = if truthy(&v) {
                        self.walk(&b.body, &v)
                    } else {
                        self.walk(&b.otherwise, dot)
                    };
                    self.vars.truncate(mark);
                    res?;
                }
                Node::Range(b) => self.range(b, dot)?,
            }
            if self.out.len() > MAX_OUTPUT {
                return self.fail(format!(
                    "the rendered output is larger than {} MiB",
                    MAX_OUTPUT >> 20
                ));
            }
        }
        Ok(())
    }

    fn range(&mut self, b: &Branches, dot: &Value) -> Result<(), ExecError> {
        let mark = self.vars.len();
        self.line = b.line;
        // The pipeline's value, without declaring its variables yet.
        let plain = Pipe {
            vars: vec![],
            declare: false,
            cmds: b.pipe.cmds.clone(),
            line: b.pipe.line,
        };
        let v = self.pipe(&plain, dot)?;
        let items: Vec<(Value, Value)> = match v {
            Value::Array(a) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::from(i), v))
                .collect(),
            Value::Object(m) => {
                let mut pairs: Vec<(String, Value)> = m.into_iter().collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs
                    .into_iter()
                    .map(|(k, v)| (Value::String(k), v))
                    .collect()
            }
            Value::Null => Vec::new(),
            Value::Number(n) if n.as_i64().is_some() => (0..n.as_i64().unwrap_or(0).max(0))
                .map(|i| (Value::from(i), Value::from(i)))
                .collect(),
            other => return self.fail(format!("range can't iterate over {}", show(&other))),
        };
        if items.is_empty() {
            let res = self.walk(&b.otherwise, dot);
            self.vars.truncate(mark);
            return res;
        }
        for (k, v) in items {
            self.step()?;
            match b.pipe.vars.as_slice() {
                [] => {}
                [one] => self.vars.push((one.clone(), v.clone())),
                [key, val, ..] => {
                    self.vars.push((key.clone(), k));
                    self.vars.push((val.clone(), v.clone()));
                }
            }
            let res = self.walk(&b.body, &v);
            self.vars.truncate(mark);
            res?;
        }
        Ok(())
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value, ExecError> {
        let mut last: Option<Value> = None;
        for c in &p.cmds {
            last = Some(self.cmd(c, dot, last)?);
        }
        let v = last.unwrap_or(Value::Null);
        if let Some(name) = p.vars.first() {
            if p.declare {
                self.vars.push((name.clone(), v.clone()));
            } else {
                match self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    Some(slot) => slot.1 = v.clone(),
                    None => return self.fail(format!("undefined variable: ${name}")),
                }
            }
        }
        Ok(v)
    }

    fn cmd(&mut self, c: &Cmd, dot: &Value, piped: Option<Value>) -> Result<Value, ExecError> {
        match &c.args[0] {
            Arg::Func(name) => {
                let mut args = Vec::with_capacity(c.args.len());
                for a in &c.args[1..] {
                    args.push(self.arg(a, dot)?);
                }
                args.extend(piped);
                self.call(name, &args)
            }
            a => {
                if c.args.len() > 1 || piped.is_some() {
                    return self.fail("can't give an argument to a non-function");
                }
                self.arg(a, dot)
            }
        }
    }

    fn arg(&mut self, a: &Arg, dot: &Value) -> Result<Value, ExecError> {
        match a {
            Arg::Dot(fields) => self.fields(dot.clone(), fields),
            Arg::Var(name, fields) => {
                let v = if name.is_empty() {
                    self.vars[0].1.clone()
                } else {
                    match self.vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => v.clone(),
                        None => return self.fail(format!("undefined variable: ${name}")),
                    }
                };
                self.fields(v, fields)
            }
            Arg::Sub(p, fields) => {
                let v = self.pipe(p, dot)?;
                self.fields(v, fields)
            }
            Arg::Str(s) => Ok(Value::String(s.clone())),
            Arg::Int(i) => Ok(Value::from(*i)),
            Arg::Float(f) => Ok(serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Ok(Value::Null),
            Arg::Func(name) => self.call(name, &[]),
        }
    }

    fn fields(&self, mut v: Value, fields: &[String]) -> Result<Value, ExecError> {
        for f in fields {
            v = match v {
                Value::Object(mut m) => match m.remove(f) {
                    Some(x) => x,
                    None if self.missing_key_error => {
                        return self.fail(format!("map has no entry for key {f:?}"))
                    }
                    None => Value::Null,
                },
                Value::Null => {
                    if self.missing_key_error {
                        return self.fail(format!("nil pointer evaluating .{f}"));
                    }
                    Value::Null
                }
                other => {
                    return self.fail(format!(
                        "can't evaluate field {f} in type {}",
                        type_name(&other)
                    ))
                }
            };
        }
        Ok(v)
    }

    fn call(&mut self, name: &str, args: &[Value]) -> Result<Value, ExecError> {
        self.step()?;
        let v = self
            .builtin(name, args)
            .or_else(|e| self.fail(format!("error calling {name}: {e}")))?;
        let too_big = match &v {
            Value::String(s) => s.len() > MAX_OUTPUT,
            Value::Array(a) => a.len() > MAX_LIST,
            _ => false,
        };
        if too_big {
            return self.fail(format!("{name} returned more than the template may render"));
        }
        Ok(v)
    }

    fn builtin(&self, name: &str, args: &[Value]) -> Result<Value, String> {
        match name {
            "and" => Ok(args
                .iter()
                .find(|a| !truthy(a))
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)),
            "or" => Ok(args
                .iter()
                .find(|a| truthy(a))
                .or(args.last())
                .cloned()
                .unwrap_or(Value::Null)),
            "not" => one(name, args).map(|a| Value::Bool(!truthy(a))),
            "len" => one(name, args).and_then(|a| match a {
                Value::String(s) => Ok(Value::from(s.len())),
                Value::Array(a) => Ok(Value::from(a.len())),
                Value::Object(m) => Ok(Value::from(m.len())),
                Value::Null => Ok(Value::from(0)),
                other => Err(format!("len of {}", type_name(other))),
            }),
            "index" => index(args),
            "print" => Ok(Value::String(sprint(args))),
            "println" => Ok(Value::String(
                args.iter().map(show).collect::<Vec<_>>().join(" ") + "\n",
            )),
            "printf" => match args.first() {
                Some(Value::String(f)) => sprintf(f, &args[1..]).map(Value::String),
                _ => Err("printf needs a format string first".into()),
            },
            "eq" => {
                if args.len() < 2 {
                    Err("eq needs at least 2 arguments".into())
                } else {
                    let mut any = false;
                    for b in &args[1..] {
                        any |= compare(&args[0], b)? == std::cmp::Ordering::Equal;
                    }
                    Ok(Value::Bool(any))
                }
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                if args.len() != 2 {
                    Err(format!("{name} needs 2 arguments"))
                } else {
                    let o = compare(&args[0], &args[1])?;
                    use std::cmp::Ordering::*;
                    Ok(Value::Bool(match name {
                        "ne" => o != Equal,
                        "lt" => o == Less,
                        "le" => o != Greater,
                        "gt" => o == Greater,
                        _ => o != Less,
                    }))
                }
            }
            _ => match self.funcs.get(name) {
                Some(f) => f(args),
                None => Err(format!("function {name:?} not defined")),
            },
        }
    }
}

fn one<'v>(name: &str, args: &'v [Value]) -> Result<&'v Value, String> {
    match args {
        [a] => Ok(a),
        _ => Err(format!("{name} needs 1 argument, got {}", args.len())),
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let Some((first, keys)) = args.split_first() else {
        return Err("index needs an argument".into());
    };
    let mut v = first.clone();
    for k in keys {
        v = match (v, k) {
            (Value::Object(mut m), Value::String(k)) => m.remove(k).unwrap_or(Value::Null),
            (Value::Array(a), Value::Number(n)) => {
                let i = n.as_i64().unwrap_or(-1);
                if i < 0 || i as usize >= a.len() {
                    return Err(format!("index out of range: {i}"));
                }
                a[i as usize].clone()
            }
            (Value::String(s), Value::Number(n)) => {
                let i = n.as_i64().unwrap_or(-1);
                match usize::try_from(i).ok().and_then(|i| s.as_bytes().get(i)) {
                    Some(b) => Value::from(*b),
                    None => return Err(format!("index out of range: {i}")),
                }
            }
            (Value::Null, _) => Value::Null,
            (v, k) => {
                return Err(format!(
                    "can't index item of type {} with {}",
                    type_name(&v),
                    type_name(k)
                ))
            }
        };
    }
    Ok(v)
}

/// Go's truthiness: false, 0, nil and empty strings, lists and maps are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "slice",
        Value::Object(_) => "map",
    }
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                return Ok(x.cmp(&y));
            }
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            Ok(x.partial_cmp(&y).unwrap_or(Ordering::Equal))
        }
        (Value::String(x), Value::String(y)) => Ok(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        (Value::Null, Value::Null) => Ok(Ordering::Equal),
        (Value::Null, _) | (_, Value::Null) => Ok(Ordering::Less),
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// Go's `%v` of a value (a missing value prints as nothing).
pub fn show(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => show_number(n),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(show).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", show(&m[*k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

fn show_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    if f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither side is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !a.is_string() && !args[i - 1].is_string() {
            out.push(' ');
        }
        out.push_str(&show(a));
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %q %t %x %X %o %b %e %%`,
/// with flags `-`, `0`, `+`, a width and a precision.
pub fn sprintf(format: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut left = false;
        let mut zero = false;
        let mut plus = false;
        while let Some(&f) = chars.peek() {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' | '#' => {}
                _ => break,
            }
            chars.next();
        }
        let mut width = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            width.push(*d);
            chars.next();
        }
        let mut prec: Option<usize> = None;
        if chars.peek() == Some(&'.') {
            chars.next();
            let mut p = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                p.push(*d);
                chars.next();
            }
            prec = Some(if p.len() > 4 {
                usize::MAX
            } else {
                p.parse().unwrap_or(0)
            });
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let num = a.as_f64();
        let int = a.as_i64();
        let mut s = match verb {
            'v' | 's' => {
                let s = show(a);
                match prec {
                    Some(p) if verb == 's' => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            'q' => serde_json::to_string(&show(a)).unwrap_or_default(),
            't' => show(a),
            'd' => match int.or_else(|| num.map(|f| f as i64)) {
                Some(i) if plus && i >= 0 => format!("+{i}"),
                Some(i) => i.to_string(),
                None => format!("%!d({})", show(a)),
            },
            'f' | 'F' => match num {
                Some(f) => format!("{f:.*}", prec.unwrap_or(6)),
                None => format!("%!f({})", show(a)),
            },
            'e' => match num {
                Some(f) => format!("{f:.*e}", prec.unwrap_or(6)),
                None => format!("%!e({})", show(a)),
            },
            'x' | 'X' | 'o' | 'b' => match (int, a) {
                (Some(i), _) => match verb {
                    'x' => format!("{i:x}"),
                    'X' => format!("{i:X}"),
                    'o' => format!("{i:o}"),
                    _ => format!("{i:b}"),
                },
                (None, Value::String(s)) if verb == 'x' || verb == 'X' => {
                    let h: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                    if verb == 'X' {
                        h.to_uppercase()
                    } else {
                        h
                    }
                }
                _ => format!("%!{verb}({})", show(a)),
            },
            other => format!("%!{other}({})", show(a)),
        };
        if width.len() > 4 || prec.is_some_and(|p| p > 9999) {
            return Err("printf: width and precision are limited to 9999".into());
        }
        if let Ok(w) = width.parse::<usize>() {
            let len = s.chars().count();
            if len < w {
                let pad = w - len;
                if left {
                    s.push_str(&" ".repeat(pad));
                } else if zero && num.is_some() {
                    let (sign, digits) = match s.strip_prefix('-') {
                        Some(d) => ("-", d.to_string()),
                        None => ("", s.clone()),
                    };
                    s = format!("{sign}{}{digits}", "0".repeat(pad));
                } else {
                    s = format!("{}{s}", " ".repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    let extra: Vec<String> = args.map(show).collect();
    if !extra.is_empty() {
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    Ok(out)
}
