//! The functions consul-template gives Nomad's templates: the task's environment, Nomad
//! variables and services read from the servers, and the string, JSON and math helpers
//! job files use.
//!
//! Rendering is synchronous and pure: a function that needs server data looks it up in
//! a [`Snapshot`]. What is not there yet is recorded as missing (the caller fetches it and
//! renders again, as consul-template's dependency loop does); a variable that does not
//! exist is recorded as absent, which keeps the template from being written.

use super::exec::{show, type_name, Func, Funcs};
use base64::Engine;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Something a template reads from the servers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dep {
    /// `nomadVar` / `nomadVarExists`: one variable.
    Var { path: String, namespace: String },
    /// `nomadVarList`: the variables under a prefix.
    VarList { prefix: String, namespace: String },
    /// `nomadService`: the instances of one service; `choose` (`"n|key"`) picks `n` of
    /// them by rendezvous hashing on the servers (`nomadService N KEY NAME`).
    Service {
        name: String,
        namespace: String,
        choose: Option<String>,
    },
    /// `nomadServices`: every service of a namespace.
    Services { namespace: String },
}

impl Dep {
    /// Nomad's way of naming what a template waits for (`nomad.var.block(p@ns.global)`).
    pub fn describe(&self) -> String {
        match self {
            Dep::Var { path, namespace } => format!("nomad.var.block({path}@{namespace}.global)"),
            Dep::VarList { prefix, namespace } => {
                format!("nomad.var.list({prefix}@{namespace}.global)")
            }
            Dep::Service {
                name, namespace, ..
            } => format!("nomad.service({name}@{namespace})"),
            Dep::Services { namespace } => format!("nomad.services({namespace})"),
        }
    }
}

/// Fetched server data: `None` for something that does not exist (a variable's 404).
pub type Snapshot = BTreeMap<Dep, Option<Value>>;

/// The names [`FuncTable`] defines.
pub const NAMES: &[&str] = &[
    "env",
    "nomadVar",
    "nomadVarExists",
    "nomadVarList",
    "nomadService",
    "nomadServices",
    "toJSON",
    "toJSONPretty",
    "parseJSON",
    "split",
    "join",
    "replaceAll",
    "toLower",
    "toUpper",
    "toTitle",
    "trimSpace",
    "trimPrefix",
    "trimSuffix",
    "contains",
    "containsAny",
    "containsAll",
    "loop",
    "add",
    "subtract",
    "multiply",
    "divide",
    "modulo",
    "parseInt",
    "parseFloat",
    "parseBool",
    "base64Encode",
    "base64Decode",
    "indent",
];

/// What the functions of one render read, and what they found missing.
pub struct Context<'a> {
    pub env: &'a BTreeMap<String, String>,
    pub snapshot: &'a Snapshot,
    /// The job's namespace, for reads that do not name one.
    pub namespace: &'a str,
    /// Every server read the template made (what to watch).
    pub used: RefCell<BTreeSet<Dep>>,
    /// Reads not in the snapshot yet.
    pub missing: RefCell<BTreeSet<Dep>>,
    /// Variables the template needs that do not exist.
    pub absent: RefCell<BTreeSet<Dep>>,
}

impl<'a> Context<'a> {
    pub fn new(
        env: &'a BTreeMap<String, String>,
        snapshot: &'a Snapshot,
        namespace: &'a str,
    ) -> Self {
        Context {
            env,
            snapshot,
            namespace,
            used: RefCell::default(),
            missing: RefCell::default(),
            absent: RefCell::default(),
        }
    }

    /// The data for `dep`: `Some(None)` when it does not exist, `None` when not fetched.
    fn read(&self, dep: Dep) -> Option<Option<Value>> {
        self.used.borrow_mut().insert(dep.clone());
        match self.snapshot.get(&dep) {
            Some(v) => Some(v.clone()),
            None => {
                self.missing.borrow_mut().insert(dep);
                None
            }
        }
    }

    /// `name@namespace` as Nomad's template functions take it.
    fn split_ns(&self, s: &str) -> (String, String) {
        match s.rsplit_once('@') {
            Some((name, ns)) if !ns.is_empty() => (name.to_string(), ns.to_string()),
            _ => (s.to_string(), self.namespace.to_string()),
        }
    }
}

/// The functions, bound to one render's [`Context`].
pub struct FuncTable<'a> {
    map: HashMap<&'static str, Box<Func<'a>>>,
}

impl Funcs for FuncTable<'_> {
    fn get(&self, name: &str) -> Option<&Func<'_>> {
        self.map.get(name).map(|f| &**f as &Func<'_>)
    }
}

fn string_arg<'v>(name: &str, args: &'v [Value], i: usize) -> Result<&'v str, String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!(
            "{name}: argument {} must be a string, got {}",
            i + 1,
            type_name(other)
        )),
        None => Err(format!("{name}: missing argument {}", i + 1)),
    }
}

fn arity(name: &str, args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("{name} takes {n} argument(s), got {}", args.len()));
    }
    Ok(())
}

/// Refuses a result of `size` bytes larger than a template may render.
fn fits(name: &str, size: usize) -> Result<(), String> {
    if size > super::exec::MAX_OUTPUT {
        return Err(format!(
            "{name}: the result would be larger than {} MiB",
            super::exec::MAX_OUTPUT >> 20
        ));
    }
    Ok(())
}

fn number(name: &str, v: &Value) -> Result<f64, String> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{name}: {s:?} is not a number")),
        other => Err(format!("{name}: {} is not a number", type_name(other))),
    }
}

fn num_value(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Value::from(f as i64)
    } else {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// consul-template's math: the piped (last) value is the left operand.
fn math(name: &'static str, op: fn(f64, f64) -> Result<f64, String>) -> Box<Func<'static>> {
    Box::new(move |args: &[Value]| {
        arity(name, args, 2)?;
        let b = number(name, &args[0])?;
        let a = number(name, &args[1])?;
        op(a, b).map(num_value)
    })
}

fn strings_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().map(show).collect(),
        other => vec![show(other)],
    }
}

/// Whether `haystack` (a list, a map's keys or a string) holds `needle`.
fn holds(haystack: &Value, needle: &Value) -> bool {
    match haystack {
        Value::Array(a) => a.iter().any(|x| x == needle || show(x) == show(needle)),
        Value::Object(m) => m.contains_key(&show(needle)),
        Value::String(s) => s.contains(&show(needle)),
        _ => false,
    }
}

/// A service registration in consul-template's `NomadService` shape.
fn service_view(r: &Value) -> Value {
    json!({
        "ID": r.get("ID").cloned().unwrap_or(Value::Null),
        "Name": r.get("ServiceName").cloned().unwrap_or(Value::Null),
        "Namespace": r.get("Namespace").cloned().unwrap_or(Value::Null),
        "NodeID": r.get("NodeID").cloned().unwrap_or(Value::Null),
        "Datacenter": r.get("Datacenter").cloned().unwrap_or(Value::Null),
        "JobID": r.get("JobID").cloned().unwrap_or(Value::Null),
        "AllocID": r.get("AllocID").cloned().unwrap_or(Value::Null),
        "Tags": r.get("Tags").cloned().unwrap_or_else(|| json!([])),
        "Address": r.get("Address").cloned().unwrap_or(Value::Null),
        "Port": r.get("Port").cloned().unwrap_or(Value::Null),
    })
}

impl<'a> FuncTable<'a> {
    // Long but flat: one entry per function, in the order of `NAMES`.
    pub fn new(ctx: &'a Context<'a>) -> Self {
        let mut map: HashMap<&'static str, Box<Func<'a>>> = HashMap::new();
        map.insert(
            "env",
            Box::new(move |args: &[Value]| {
                let k = string_arg("env", args, 0)?;
                Ok(Value::String(ctx.env.get(k).cloned().unwrap_or_default()))
            }),
        );
        map.insert(
            "nomadVar",
            Box::new(move |args: &[Value]| {
                arity("nomadVar", args, 1)?;
                let (path, namespace) = ctx.split_ns(string_arg("nomadVar", args, 0)?);
                let dep = Dep::Var { path, namespace };
                match ctx.read(dep.clone()) {
                    Some(Some(v)) => Ok(v.get("Items").cloned().unwrap_or_else(|| json!({}))),
                    Some(None) => {
                        ctx.absent.borrow_mut().insert(dep);
                        Ok(json!({}))
                    }
                    None => Ok(json!({})),
                }
            }),
        );
        map.insert(
            "nomadVarExists",
            Box::new(move |args: &[Value]| {
                arity("nomadVarExists", args, 1)?;
                let (path, namespace) = ctx.split_ns(string_arg("nomadVarExists", args, 0)?);
                Ok(Value::Bool(matches!(
                    ctx.read(Dep::Var { path, namespace }),
                    Some(Some(_))
                )))
            }),
        );
        map.insert(
            "nomadVarList",
            Box::new(move |args: &[Value]| {
                let prefix = match args.first() {
                    Some(_) => string_arg("nomadVarList", args, 0)?,
                    None => "",
                };
                let (prefix, namespace) = ctx.split_ns(prefix);
                Ok(ctx
                    .read(Dep::VarList { prefix, namespace })
                    .flatten()
                    .unwrap_or_else(|| json!([])))
            }),
        );
        map.insert(
            "nomadService",
            Box::new(move |args: &[Value]| {
                // `nomadService "name"`, or `nomadService N "key" "name"`.
                let choose = match args {
                    [_] => None,
                    [n, key, _] => {
                        let n = number("nomadService", n)?;
                        if n < 1.0 {
                            return Err("nomadService: the count must be at least 1".into());
                        }
                        Some(format!("{}|{}", n as u64, show(key)))
                    }
                    _ => return Err("nomadService takes 1 or 3 arguments".into()),
                };
                let name = string_arg("nomadService", args, args.len() - 1)?;
                let (name, namespace) = ctx.split_ns(name);
                let regs = ctx
                    .read(Dep::Service {
                        name,
                        namespace,
                        choose,
                    })
                    .flatten()
                    .unwrap_or_else(|| json!([]));
                let list = regs.as_array().cloned().unwrap_or_default();
                Ok(Value::Array(list.iter().map(service_view).collect()))
            }),
        );
        map.insert(
            "nomadServices",
            Box::new(move |_args: &[Value]| {
                let namespace = ctx.namespace.to_string();
                let stubs = ctx
                    .read(Dep::Services { namespace })
                    .flatten()
                    .unwrap_or_else(|| json!([]));
                let mut out = Vec::new();
                for ns in stubs.as_array().into_iter().flatten() {
                    for s in ns
                        .get("Services")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.push(json!({
                            "Name": s.get("ServiceName").cloned().unwrap_or(Value::Null),
                            "Namespace": ns.get("Namespace").cloned().unwrap_or(Value::Null),
                            "Tags": s.get("Tags").cloned().unwrap_or_else(|| json!([])),
                        }));
                    }
                }
                Ok(Value::Array(out))
            }),
        );
        map.insert(
            "toJSON",
            Box::new(|args: &[Value]| {
                arity("toJSON", args, 1)?;
                serde_json::to_string(&args[0])
                    .map(Value::String)
                    .map_err(|e| e.to_string())
            }),
        );
        map.insert(
            "toJSONPretty",
            Box::new(|args: &[Value]| {
                arity("toJSONPretty", args, 1)?;
                serde_json::to_string_pretty(&args[0])
                    .map(Value::String)
                    .map_err(|e| e.to_string())
            }),
        );
        map.insert(
            "parseJSON",
            Box::new(|args: &[Value]| {
                let s = string_arg("parseJSON", args, 0)?;
                if s.trim().is_empty() {
                    return Ok(json!({}));
                }
                serde_json::from_str(s).map_err(|e| format!("parseJSON: {e}"))
            }),
        );
        map.insert(
            "split",
            Box::new(|args: &[Value]| {
                arity("split", args, 2)?;
                let sep = string_arg("split", args, 0)?;
                let s = string_arg("split", args, 1)?;
                if s.is_empty() {
                    return Ok(json!([]));
                }
                Ok(Value::Array(
                    s.split(sep).map(|p| Value::String(p.into())).collect(),
                ))
            }),
        );
        map.insert(
            "join",
            Box::new(|args: &[Value]| {
                arity("join", args, 2)?;
                let sep = string_arg("join", args, 0)?;
                let parts = strings_of(&args[1]);
                let size = parts.iter().map(String::len).sum::<usize>()
                    + sep.len().saturating_mul(parts.len());
                fits("join", size)?;
                Ok(Value::String(parts.join(sep)))
            }),
        );
        map.insert(
            "replaceAll",
            Box::new(|args: &[Value]| {
                arity("replaceAll", args, 3)?;
                let from = string_arg("replaceAll", args, 0)?;
                let to = string_arg("replaceAll", args, 1)?;
                let s = string_arg("replaceAll", args, 2)?;
                let hits = if from.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(from).count()
                };
                fits(
                    "replaceAll",
                    s.len().saturating_add(hits.saturating_mul(to.len())),
                )?;
                Ok(Value::String(s.replace(from, to)))
            }),
        );
        let unary = |name: &'static str, f: fn(&str) -> String| -> Box<Func<'a>> {
            Box::new(move |args: &[Value]| {
                arity(name, args, 1)?;
                Ok(Value::String(f(&show(&args[0]))))
            })
        };
        map.insert("toLower", unary("toLower", str::to_lowercase));
        map.insert("toUpper", unary("toUpper", str::to_uppercase));
        map.insert(
            "toTitle",
            unary("toTitle", |s| {
                let mut out = String::with_capacity(s.len());
                let mut start = true;
                for c in s.chars() {
                    if start {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = c.is_whitespace();
                }
                out
            }),
        );
        map.insert("trimSpace", unary("trimSpace", |s| s.trim().to_string()));
        map.insert(
            "base64Encode",
            unary("base64Encode", |s| {
                base64::engine::general_purpose::STANDARD.encode(s)
            }),
        );
        map.insert(
            "base64Decode",
            Box::new(|args: &[Value]| {
                let s = string_arg("base64Decode", args, 0)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| format!("base64Decode: {e}"))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| "base64Decode: the decoded bytes are not UTF-8".into())
            }),
        );
        map.insert(
            "trimPrefix",
            Box::new(|args: &[Value]| {
                arity("trimPrefix", args, 2)?;
                let p = string_arg("trimPrefix", args, 0)?;
                let s = string_arg("trimPrefix", args, 1)?;
                Ok(Value::String(s.strip_prefix(p).unwrap_or(s).into()))
            }),
        );
        map.insert(
            "trimSuffix",
            Box::new(|args: &[Value]| {
                arity("trimSuffix", args, 2)?;
                let p = string_arg("trimSuffix", args, 0)?;
                let s = string_arg("trimSuffix", args, 1)?;
                Ok(Value::String(s.strip_suffix(p).unwrap_or(s).into()))
            }),
        );
        map.insert(
            "contains",
            Box::new(|args: &[Value]| {
                arity("contains", args, 2)?;
                Ok(Value::Bool(holds(&args[1], &args[0])))
            }),
        );
        map.insert(
            "containsAny",
            Box::new(|args: &[Value]| {
                arity("containsAny", args, 2)?;
                let needles = args[0].as_array().cloned().unwrap_or_default();
                Ok(Value::Bool(needles.iter().any(|n| holds(&args[1], n))))
            }),
        );
        map.insert(
            "containsAll",
            Box::new(|args: &[Value]| {
                arity("containsAll", args, 2)?;
                let needles = args[0].as_array().cloned().unwrap_or_default();
                Ok(Value::Bool(needles.iter().all(|n| holds(&args[1], n))))
            }),
        );
        map.insert(
            "loop",
            Box::new(|args: &[Value]| {
                let ints: Vec<i64> = args
                    .iter()
                    .map(|a| number("loop", a).map(|f| f as i64))
                    .collect::<Result<_, _>>()?;
                let (start, stop) = match ints.as_slice() {
                    [n] => (0, *n),
                    [a, b] => (*a, *b),
                    _ => return Err("loop takes 1 or 2 arguments".into()),
                };
                if stop.saturating_sub(start) > 100_000 {
                    return Err("loop: more than 100000 iterations".into());
                }
                Ok(Value::Array((start..stop).map(Value::from).collect()))
            }),
        );
        map.insert("add", math("add", |a, b| Ok(a + b)));
        map.insert("subtract", math("subtract", |a, b| Ok(a - b)));
        map.insert("multiply", math("multiply", |a, b| Ok(a * b)));
        map.insert(
            "divide",
            math("divide", |a, b| {
                if b == 0.0 {
                    Err("divide: division by zero".into())
                } else {
                    Ok(a / b)
                }
            }),
        );
        map.insert(
            "modulo",
            math("modulo", |a, b| {
                if b == 0.0 {
                    Err("modulo: division by zero".into())
                } else {
                    Ok(a % b)
                }
            }),
        );
        map.insert(
            "parseInt",
            Box::new(|args: &[Value]| {
                let s = string_arg("parseInt", args, 0)?;
                s.trim()
                    .parse::<i64>()
                    .map(Value::from)
                    .map_err(|_| format!("parseInt: {s:?} is not an integer"))
            }),
        );
        map.insert(
            "parseFloat",
            Box::new(|args: &[Value]| {
                let s = string_arg("parseFloat", args, 0)?;
                number("parseFloat", &Value::String(s.into())).map(num_value)
            }),
        );
        map.insert(
            "parseBool",
            Box::new(|args: &[Value]| {
                let s = string_arg("parseBool", args, 0)?;
                match s.trim() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(Value::Bool(true)),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(Value::Bool(false)),
                    _ => Err(format!("parseBool: {s:?} is not a boolean")),
                }
            }),
        );
        map.insert(
            "indent",
            Box::new(|args: &[Value]| {
                arity("indent", args, 2)?;
                let n = number("indent", &args[0])? as usize;
                let pad = " ".repeat(n.min(1024));
                let s = show(&args[1]);
                let lines = s.matches('\n').count() + 1;
                fits(
                    "indent",
                    s.len().saturating_add(lines.saturating_mul(pad.len())),
                )?;
                Ok(Value::String(
                    s.split('\n')
                        .map(|l| format!("{pad}{l}"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                ))
            }),
        );
        debug_assert!(map.keys().all(|k| NAMES.contains(k)));
        FuncTable { map }
    }
}
