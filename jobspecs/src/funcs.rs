//! The HCL2 functions Nomad job files commonly use. Each takes evaluated arguments and
//! returns a value or a sentence saying what was wrong.

use crate::diag::suggestion;
use crate::eval::{EvalError, EvalResult, Files, Scope};
use crate::value::{number, to_bool, to_f64, to_i64, to_str, type_name, Value};
use std::ops::Range;

/// Every function name we implement, for "did you mean" hints.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "base64decode",
    "base64encode",
    "ceil",
    "chomp",
    "coalesce",
    "concat",
    "contains",
    "element",
    "file",
    "floor",
    "format",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "replace",
    "split",
    "substr",
    "title",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "upper",
    "values",
];

/// HCL's functions that read the filesystem. Where the filesystem is off (a server
/// parsing a submitted job) every one of them fails, whether Drover implements it or not,
/// so the answer never depends on what the server's disk holds.
pub const FILESYSTEM_FUNCTIONS: &[&str] = &[
    "abspath",
    "file",
    "filebase64",
    "filebase64sha256",
    "filebase64sha512",
    "fileexists",
    "filemd5",
    "fileset",
    "filesha1",
    "filesha256",
    "filesha512",
    "pathexpand",
    "templatefile",
];

/// The refusal of a filesystem function where the filesystem is off, in the spirit of
/// Nomad's "Call to function "file" failed: filesystem function disabled."
fn filesystem_disabled(name: &str, span: Option<Range<usize>>) -> EvalError {
    let mut e = EvalError::new(
        span,
        format!(
            "Call to function {name:?} failed: filesystem function disabled. A job parsed \
             by the server cannot read the server's files; put the content in the job \
             (or a variable), or submit the job file with `drover job run`, which reads \
             {name}() paths relative to the job file"
        ),
    );
    e.filesystem_denied = true;
    e
}

/// Calls function `name`; `spans` are the argument spans, `span` the call's.
pub fn call(
    scope: &Scope<'_>,
    name: &str,
    args: Vec<Value>,
    spans: &[Option<Range<usize>>],
    span: Option<Range<usize>>,
) -> EvalResult {
    if scope.files == Files::Disabled && FILESYSTEM_FUNCTIONS.contains(&name) {
        return Err(filesystem_disabled(name, span));
    }
    let fail = |m: String| EvalError::new(span.clone(), format!("{name}(): {m}"));
    let arity = |n: usize| -> Result<(), EvalError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(fail(format!("takes {n} argument(s), got {}", args.len())))
        }
    };
    let str_arg = |i: usize| -> Result<String, EvalError> {
        to_str(&args[i]).ok_or_else(|| {
            EvalError::new(
                spans.get(i).cloned().flatten().or(span.clone()),
                format!(
                    "{name}(): argument {} must be a string, got {}",
                    i + 1,
                    type_name(&args[i])
                ),
            )
        })
    };
    let num_arg = |i: usize| -> Result<f64, EvalError> {
        to_f64(&args[i]).ok_or_else(|| {
            EvalError::new(
                spans.get(i).cloned().flatten().or(span.clone()),
                format!(
                    "{name}(): argument {} must be a number, got {}",
                    i + 1,
                    type_name(&args[i])
                ),
            )
        })
    };
    let list_arg = |i: usize| -> Result<&Vec<Value>, EvalError> {
        match &args[i] {
            Value::Array(a) => Ok(a),
            other => Err(EvalError::new(
                spans.get(i).cloned().flatten().or(span.clone()),
                format!(
                    "{name}(): argument {} must be a list, got {}",
                    i + 1,
                    type_name(other)
                ),
            )),
        }
    };
    let str_fn = |f: &dyn Fn(&str) -> String| -> EvalResult {
        arity(1)?;
        Ok(Value::String(f(&str_arg(0)?)))
    };

    match name {
        "lower" => str_fn(&|s| s.to_lowercase()),
        "upper" => str_fn(&|s| s.to_uppercase()),
        "trimspace" => str_fn(&|s| s.trim().to_string()),
        "chomp" => str_fn(&|s| s.trim_end_matches(['\n', '\r']).to_string()),
        "title" => str_fn(&title),
        "tostring" => {
            arity(1)?;
            match &args[0] {
                Value::Null => Ok(Value::Null),
                v => to_str(v)
                    .map(Value::String)
                    .ok_or_else(|| fail(format!("cannot convert a {} to a string", type_name(v)))),
            }
        }
        "tonumber" => {
            arity(1)?;
            match &args[0] {
                Value::Null => Ok(Value::Null),
                v => to_f64(v)
                    .map(number)
                    .ok_or_else(|| fail(format!("cannot convert {v} to a number"))),
            }
        }
        "tobool" => {
            arity(1)?;
            match &args[0] {
                Value::Null => Ok(Value::Null),
                v => to_bool(v)
                    .map(Value::Bool)
                    .ok_or_else(|| fail(format!("cannot convert {v} to a bool"))),
            }
        }
        "tolist" | "toset" => {
            arity(1)?;
            let mut items = list_arg(0)?.clone();
            if name == "toset" {
                let mut seen = Vec::new();
                items.retain(|v| {
                    let new = !seen.contains(v);
                    seen.push(v.clone());
                    new
                });
            }
            Ok(Value::Array(items))
        }
        "tomap" => {
            arity(1)?;
            match &args[0] {
                Value::Object(_) => Ok(args[0].clone()),
                v => Err(fail(format!("cannot convert a {} to a map", type_name(v)))),
            }
        }
        "trim" | "trimprefix" | "trimsuffix" => {
            arity(2)?;
            let (s, cut) = (str_arg(0)?, str_arg(1)?);
            Ok(Value::String(match name {
                "trimprefix" => s.strip_prefix(cut.as_str()).unwrap_or(&s).to_string(),
                "trimsuffix" => s.strip_suffix(cut.as_str()).unwrap_or(&s).to_string(),
                _ => s.trim_matches(|c| cut.contains(c)).to_string(),
            }))
        }
        "replace" => {
            arity(3)?;
            let (s, from, to) = (str_arg(0)?, str_arg(1)?, str_arg(2)?);
            if from.len() > 2 && from.starts_with('/') && from.ends_with('/') {
                return Err(fail("regular expression patterns are not supported".into()));
            }
            Ok(Value::String(s.replace(&from, &to)))
        }
        "substr" => {
            arity(3)?;
            let s: Vec<char> = str_arg(0)?.chars().collect();
            let offset = num_arg(1)? as i64;
            let length = num_arg(2)? as i64;
            let len = s.len() as i64;
            let start = if offset < 0 {
                (len + offset).max(0)
            } else {
                offset.min(len)
            };
            let end = if length < 0 {
                len
            } else {
                start.saturating_add(length).min(len)
            };
            Ok(Value::String(
                s[start as usize..end as usize].iter().collect(),
            ))
        }
        "format" => {
            if args.is_empty() {
                return Err(fail("needs a format string".into()));
            }
            format(&str_arg(0)?, &args[1..])
                .map(Value::String)
                .map_err(fail)
        }
        "join" => {
            if args.len() < 2 {
                return Err(fail("takes a separator and at least one list".into()));
            }
            let sep = str_arg(0)?;
            let mut parts = Vec::new();
            for i in 1..args.len() {
                for v in list_arg(i)? {
                    parts.push(to_str(v).ok_or_else(|| {
                        fail(format!(
                            "list elements must be strings, got {}",
                            type_name(v)
                        ))
                    })?);
                }
            }
            Ok(Value::String(parts.join(&sep)))
        }
        "split" => {
            arity(2)?;
            let (sep, s) = (str_arg(0)?, str_arg(1)?);
            Ok(Value::Array(
                s.split(sep.as_str())
                    .map(|p| Value::String(p.into()))
                    .collect(),
            ))
        }
        "concat" => {
            let mut out = Vec::new();
            for i in 0..args.len() {
                out.extend(list_arg(i)?.iter().cloned());
            }
            Ok(Value::Array(out))
        }
        "merge" => {
            let mut out = serde_json::Map::new();
            for (i, a) in args.iter().enumerate() {
                match a {
                    Value::Object(m) => out.extend(m.clone()),
                    Value::Null => {}
                    other => {
                        return Err(EvalError::new(
                            spans.get(i).cloned().flatten(),
                            format!("merge(): arguments must be maps, got {}", type_name(other)),
                        ))
                    }
                }
            }
            Ok(Value::Object(out))
        }
        "lookup" => {
            if !(2..=3).contains(&args.len()) {
                return Err(fail(format!("takes 2 or 3 arguments, got {}", args.len())));
            }
            let key = str_arg(1)?;
            match &args[0] {
                Value::Object(m) => match (m.get(&key), args.get(2)) {
                    (Some(v), _) => Ok(v.clone()),
                    (None, Some(default)) => Ok(default.clone()),
                    (None, None) => Err(fail(format!("no key {key:?} and no default"))),
                },
                other => Err(fail(format!(
                    "first argument must be a map, got {}",
                    type_name(other)
                ))),
            }
        }
        "length" => {
            arity(1)?;
            match &args[0] {
                Value::Array(a) => Ok(Value::from(a.len())),
                Value::Object(m) => Ok(Value::from(m.len())),
                Value::String(s) => Ok(Value::from(s.chars().count())),
                other => Err(fail(format!(
                    "cannot take the length of a {}",
                    type_name(other)
                ))),
            }
        }
        "keys" | "values" => {
            arity(1)?;
            match &args[0] {
                Value::Object(m) if name == "keys" => Ok(Value::Array(
                    m.keys().map(|k| Value::String(k.clone())).collect(),
                )),
                Value::Object(m) => Ok(Value::Array(m.values().cloned().collect())),
                other => Err(fail(format!(
                    "argument must be a map, got {}",
                    type_name(other)
                ))),
            }
        }
        "contains" => {
            arity(2)?;
            Ok(Value::Bool(list_arg(0)?.contains(&args[1])))
        }
        "element" => {
            arity(2)?;
            let list = list_arg(0)?;
            if list.is_empty() {
                return Err(fail("cannot take an element of an empty list".into()));
            }
            let i = to_i64(&args[1]).ok_or_else(|| fail("index must be a number".into()))?;
            Ok(list[(i.rem_euclid(list.len() as i64)) as usize].clone())
        }
        "base64encode" => str_fn(&|s| base64_encode(s.as_bytes())),
        "base64decode" => {
            arity(1)?;
            let bytes = base64_decode(&str_arg(0)?).ok_or_else(|| fail("invalid base64".into()))?;
            String::from_utf8(bytes)
                .map(Value::String)
                .map_err(|_| fail("the decoded bytes are not UTF-8".into()))
        }
        "jsonencode" => {
            arity(1)?;
            Ok(Value::String(args[0].to_string()))
        }
        "jsondecode" => {
            arity(1)?;
            serde_json::from_str(&str_arg(0)?).map_err(|e| fail(format!("invalid JSON: {e}")))
        }
        "file" => {
            arity(1)?;
            let rel = str_arg(0)?;
            let path = match &scope.files {
                Files::RelativeTo(dir) => dir.join(&rel),
                Files::Disabled => return Err(filesystem_disabled(name, span)),
            };
            std::fs::read_to_string(&path)
                .map(Value::String)
                .map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
        }
        "min" | "max" => {
            if args.is_empty() {
                return Err(fail("needs at least one number".into()));
            }
            let mut best = num_arg(0)?;
            for i in 1..args.len() {
                let n = num_arg(i)?;
                best = if name == "min" {
                    best.min(n)
                } else {
                    best.max(n)
                };
            }
            Ok(number(best))
        }
        "abs" | "ceil" | "floor" => {
            arity(1)?;
            let n = num_arg(0)?;
            Ok(number(match name {
                "abs" => n.abs(),
                "ceil" => n.ceil(),
                _ => n.floor(),
            }))
        }
        "coalesce" => args
            .iter()
            .find(|v| !v.is_null() && **v != Value::String(String::new()))
            .cloned()
            .ok_or_else(|| fail("all arguments are null or empty".into())),
        _ => Err(EvalError::new(
            span,
            format!("unknown function {name:?}{}", suggestion(name, FUNCTIONS)),
        )),
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// The widest `%<width>s` or `%.<precision>f` a format string may ask for.
const MAX_FORMAT_WIDTH: usize = 4096;

/// A subset of HCL's `format` verbs: %s %d %f %v %q %t %%, with optional width/precision.
fn format(spec: &str, args: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut flags = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_digit() || d == '.' || d == '-' || d == '+' || d == '#' || d == ' ' {
                flags.push(d);
                chars.next();
            } else {
                break;
            }
        }
        let verb = chars.next().ok_or("format string ends with `%`")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .get(next)
            .ok_or_else(|| format!("not enough arguments for format string {spec:?}"))?;
        next += 1;
        let precision: Option<usize> = flags.split_once('.').and_then(|(_, p)| p.parse().ok());
        let width: usize = flags
            .split('.')
            .next()
            .unwrap_or("")
            .trim_start_matches(['-', '+', '#', ' '])
            .parse()
            .unwrap_or(0);
        // A width or precision is padding; a huge one would only exhaust memory.
        if width > MAX_FORMAT_WIDTH || precision.is_some_and(|p| p > MAX_FORMAT_WIDTH) {
            return Err(format!(
                "width and precision in format strings are limited to {MAX_FORMAT_WIDTH}, \
                 in {spec:?}"
            ));
        }
        let text = match verb {
            's' | 'v' => match arg {
                Value::Array(_) | Value::Object(_) => arg.to_string(),
                Value::Null => "null".into(),
                _ => to_str(arg).unwrap_or_default(),
            },
            'q' => serde_json::to_string(&to_str(arg).unwrap_or_else(|| arg.to_string()))
                .unwrap_or_default(),
            'd' => to_i64(arg)
                .map(|i| i.to_string())
                .ok_or_else(|| format!("%d needs a whole number, got {arg}"))?,
            'f' => to_f64(arg)
                .map(|f| format!("{f:.*}", precision.unwrap_or(6)))
                .ok_or_else(|| format!("%f needs a number, got {arg}"))?,
            't' => to_bool(arg)
                .map(|b| b.to_string())
                .ok_or_else(|| format!("%t needs a bool, got {arg}"))?,
            other => return Err(format!("unsupported format verb %{other}")),
        };
        if flags.starts_with('-') {
            out.push_str(&format!("{text:<width$}"));
        } else {
            out.push_str(&format!("{text:>width$}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::format;
    use serde_json::json;

    #[test]
    fn base64_round_trips() {
        use super::{base64_decode, base64_encode};
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_decode("YWI=").unwrap(), b"ab");
    }

    #[test]
    fn format_supports_common_verbs() {
        assert_eq!(
            format("%s-%d %q %%", &[json!("a"), json!(3), json!("x")]).unwrap(),
            "a-3 \"x\" %"
        );
        assert_eq!(format("%.2f", &[json!(1.5)]).unwrap(), "1.50");
        assert!(format("%s %s", &[json!("a")]).is_err());
    }

    #[test]
    fn huge_format_widths_are_refused_not_allocated() {
        let e = format("%99999999999s", &[json!("a")]).unwrap_err();
        assert!(e.contains("limited to 4096"), "{e}");
        assert!(format("%.99999999999f", &[json!(1.5)]).is_err());
        assert_eq!(format("%5s", &[json!("a")]).unwrap(), "    a");
    }
}
