//! `variable "x" { ... }` declarations and their `validation` rules; the values given
//! from outside the file (`-var`, `-var-file`, `NOMAD_VAR_<name>`), converted to the
//! declared type; and `locals { ... }` blocks.

use crate::diag::{suggestion, Diagnostic, Diagnostics, SourceMap};
use crate::eval::{Files, Scope};
use crate::reader::Reader;
use crate::schema;
use crate::value::{to_bool, to_f64, to_str, type_name, Value};
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span;
use std::collections::BTreeMap;
use std::path::Path;

/// A variable value given from outside the job file.
#[derive(Debug, Clone, PartialEq)]
pub struct GivenVar {
    pub value: GivenValue,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GivenValue {
    /// Text from `-var` or the environment, converted to the variable's type.
    Text(String),
    /// A value from a variables file, already typed.
    Value(Value),
}

/// Where a given value came from, for messages.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Cli,
    Env,
    File {
        file: String,
        line: usize,
        column: usize,
    },
}

impl Origin {
    fn describe(&self) -> String {
        match self {
            Origin::Cli => "from -var".to_string(),
            Origin::Env => "from the environment (NOMAD_VAR_)".to_string(),
            Origin::File { file, line, column } => format!("from {file}:{line}:{column}"),
        }
    }
}

/// Reads a variables file (`-var-file`): HCL `name = value` lines, or a JSON object.
/// `file()` in it reads relative to the variables file's directory.
pub fn read_var_file(path: &Path) -> Result<Vec<(String, GivenVar)>, Diagnostics> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        file: file.clone(),
        line: 1,
        column: 1,
        message: format!("cannot read the variables file: {e}"),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_var_file_in(&src, &file, Files::RelativeTo(dir)).map_err(|(d, _)| d)
}

/// Parses a variables file's text; `file` names it in messages and origins. Nothing
/// here reads the filesystem: `file()` and the other filesystem functions fail.
pub fn parse_var_file(src: &str, file: &str) -> Result<Vec<(String, GivenVar)>, Diagnostics> {
    parse_var_file_in(src, file, Files::Disabled).map_err(|(d, _)| d)
}

/// The `Variables` text a server receives with a job to parse (`PUT /v1/jobs/parse`):
/// HCL `name = value` lines like a variables file or, when that text does not evaluate,
/// `name=value` lines taken as `-var` text. The filesystem is off: a filesystem
/// function is an error, never a fallback to text.
pub fn parse_variables_text(
    text: &str,
    file: &str,
) -> Result<Vec<(String, GivenVar)>, Diagnostics> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    match parse_var_file_in(text, file, Files::Disabled) {
        Ok(values) => return Ok(values),
        Err((d, true)) => return Err(d),
        Err((_, false)) => {}
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => out.push((
                name.trim().to_string(),
                GivenVar {
                    value: GivenValue::Text(value.trim().to_string()),
                    origin: Origin::Cli,
                },
            )),
            _ => errors.push(Diagnostic {
                file: file.to_string(),
                line: i + 1,
                column: 1,
                message: format!("expected `name = value`, got {line:?}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(errors))
    }
}

/// A variables file's text with `files` as the filesystem access; the error says
/// whether a filesystem function was refused.
fn parse_var_file_in(
    src: &str,
    file: &str,
    files: Files,
) -> Result<Vec<(String, GivenVar)>, (Diagnostics, bool)> {
    let plain = |d: Diagnostic| (Diagnostics(vec![d]), false);
    let sm = SourceMap::new(file, src);
    let origin_at = |offset: usize| {
        let (line, column) = sm.line_col(offset);
        Origin::File {
            file: file.to_string(),
            line,
            column,
        }
    };
    if file.ends_with(".json") || src.trim_start().starts_with('{') {
        let map: serde_json::Map<String, Value> = serde_json::from_str(src).map_err(|e| {
            plain(Diagnostic {
                file: file.to_string(),
                line: e.line().max(1),
                column: e.column().max(1),
                message: format!(
                    "invalid JSON variables file (expected {{\"name\": value, ...}}): {e}"
                ),
            })
        })?;
        return Ok(map
            .into_iter()
            .map(|(k, v)| {
                let at = src.find(&format!("\"{k}\"")).unwrap_or(0);
                let given = GivenVar {
                    value: GivenValue::Value(v),
                    origin: origin_at(at),
                };
                (k, given)
            })
            .collect());
    }
    let body = hcl_edit::parser::parse_body(src).map_err(|e| {
        plain(Diagnostic {
            file: file.to_string(),
            line: e.location().line(),
            column: e.location().column(),
            message: format!("syntax error: {}", e.message()),
        })
    })?;
    let scope = Scope::new(src, files);
    let mut out: Vec<(String, GivenVar)> = Vec::new();
    let mut errors = Vec::new();
    let mut denied = false;
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => {
                let name = a.key.as_str().to_string();
                let at = a.key.span().map(|s| s.start).unwrap_or(0);
                if out.iter().any(|(n, _)| *n == name) {
                    errors.push(sm.at(a.key.span(), format!("variable {name:?} is set twice")));
                    continue;
                }
                match scope.eval(&a.value) {
                    Ok(v) => out.push((
                        name,
                        GivenVar {
                            value: GivenValue::Value(v),
                            origin: origin_at(at),
                        },
                    )),
                    Err(e) => {
                        denied |= e.filesystem_denied;
                        errors.push(sm.at(
                            e.span.or_else(|| a.value.span()),
                            format!("{name}: {}", e.message),
                        ))
                    }
                }
            }
            Structure::Block(b) => errors.push(sm.at(
                b.ident.span(),
                "a variables file holds only `name = value` lines, not blocks",
            )),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err((Diagnostics(errors), denied))
    }
}

/// A variable's declared type, as far as conversions need it.
#[derive(Debug, Clone, PartialEq)]
enum VarType {
    Any,
    String,
    Number,
    Bool,
    List(Box<VarType>),
    Map(Box<VarType>),
    /// `object({...})`, `tuple([...])`: values are taken as they are.
    Structural,
}

fn var_type(e: &Expression) -> Result<VarType, String> {
    match e {
        Expression::Variable(v) => match v.value().as_str() {
            "any" => Ok(VarType::Any),
            "string" => Ok(VarType::String),
            "number" => Ok(VarType::Number),
            "bool" => Ok(VarType::Bool),
            other => Err(format!(
                "unknown type {other:?}{}",
                suggestion(
                    other,
                    &["any", "string", "number", "bool", "list", "map", "set", "object", "tuple"]
                )
            )),
        },
        Expression::FuncCall(c) => {
            let name = c.name.name.value().as_str();
            let inner = || match c.args.iter().next() {
                Some(a) => var_type(a),
                None => Ok(VarType::Any),
            };
            match name {
                "list" | "set" => Ok(VarType::List(Box::new(inner()?))),
                "map" => Ok(VarType::Map(Box::new(inner()?))),
                "object" | "tuple" => Ok(VarType::Structural),
                other => Err(format!("unknown type constructor {other:?}")),
            }
        }
        _ => {
            Err("expected a type such as string, number, bool, list(string) or map(string)".into())
        }
    }
}

/// Converts `v` to type `t`, as HCL converts values.
fn convert(v: Value, t: &VarType) -> Result<Value, String> {
    let fail = |v: &Value, want: &str| Err(format!("expected {want}, got {} {v}", type_name(v)));
    match t {
        VarType::Any | VarType::Structural => Ok(v),
        _ if v.is_null() => Ok(v),
        VarType::String => match to_str(&v) {
            Some(s) => Ok(Value::String(s)),
            None => fail(&v, "a string"),
        },
        VarType::Number => match to_f64(&v) {
            Some(n) => Ok(crate::value::number(n)),
            None => fail(&v, "a number"),
        },
        VarType::Bool => match to_bool(&v) {
            Some(b) => Ok(Value::Bool(b)),
            None => fail(&v, "a bool"),
        },
        VarType::List(inner) => match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| convert(i, inner))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => fail(&other, "a list"),
        },
        VarType::Map(inner) => match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(k, v)| convert(v, inner).map(|v| (k, v)))
                .collect::<Result<serde_json::Map<_, _>, _>>()
                .map(Value::Object),
            other => fail(&other, "a map"),
        },
    }
}

/// A `-var` string as a value of type `t`: primitives convert from the text, lists and
/// maps are parsed as HCL expressions (`-var 'dcs=["dc1","dc2"]'`).
fn from_cli(s: &str, t: &VarType) -> Result<Value, String> {
    match t {
        VarType::Any | VarType::String => Ok(Value::String(s.to_string())),
        VarType::Number | VarType::Bool => convert(Value::String(s.to_string()), t),
        VarType::List(_) | VarType::Map(_) | VarType::Structural => {
            let expr = hcl_edit::parser::parse_expr(s)
                .map_err(|e| format!("cannot parse {s:?}: {}", e.message()))?;
            // `-var` text is a value, never a way to read files.
            let v = Scope::new(s, Files::Disabled)
                .eval(&expr)
                .map_err(|e| e.message)?;
            convert(v, t)
        }
    }
}

impl<'a> Reader<'a> {
    /// Declares every variable in `blocks` with its value (given, else default) and every
    /// local in `locals`. Missing values and type mismatches are positioned errors.
    pub fn declare(
        &mut self,
        variables: &[&'a Block],
        locals: &[&'a Block],
        given: &BTreeMap<String, GivenVar>,
    ) {
        let mut declared: BTreeMap<String, usize> = BTreeMap::new();
        let mut rules: Vec<(String, &'a Block, Option<&GivenVar>)> = Vec::new();
        for b in variables {
            let Some(name) = self.label(b, "") else {
                continue;
            };
            let path = format!("variable {name:?}");
            if declared.contains_key(&name) {
                self.error(
                    b.labels[0].span(),
                    "",
                    format!("variable {name:?} is declared twice"),
                );
                continue;
            }
            let line = b.span().map(|s| self.sm.line_col(s.start).0).unwrap_or(0);
            declared.insert(name.clone(), line);
            let (attrs, blocks) = self.items(&b.body, &path, &schema::VARIABLE);
            for v in blocks {
                rules.push((name.clone(), v, given.get(&name)));
            }
            let mut ty = VarType::Any;
            let mut default = None;
            for a in attrs {
                match a.key.as_str() {
                    "type" => match var_type(&a.value) {
                        Ok(t) => ty = t,
                        Err(m) => self.error(a.value.span(), &path, m),
                    },
                    "default" => default = Some(a),
                    "description" => {
                        self.string(a, &path);
                    }
                    _ => {}
                }
            }
            let value = if let Some(g) = given.get(&name) {
                let converted = match &g.value {
                    GivenValue::Text(s) => from_cli(s, &ty),
                    GivenValue::Value(v) => convert(v.clone(), &ty),
                };
                match converted {
                    Ok(v) => Some(v),
                    Err(m) => {
                        self.error(
                            b.labels[0].span(),
                            &path,
                            format!(
                                "invalid value for variable {name:?} ({}): {m}",
                                g.origin.describe()
                            ),
                        );
                        None
                    }
                }
            } else if let Some(a) = default {
                match self.value(a, &path).map(|v| convert(v, &ty)) {
                    Some(Ok(v)) => Some(v),
                    Some(Err(m)) => {
                        self.error(a.value.span(), &path, format!("default: {m}"));
                        None
                    }
                    None => None,
                }
            } else {
                self.error(
                    b.labels[0].span(),
                    "",
                    format!(
                        "variable {name:?} has no default and no value was given; \
                         pass one with -var {name}=VALUE, a -var-file or NOMAD_VAR_{name}"
                    ),
                );
                None
            };
            // A variable that failed still exists, so its uses do not add more errors.
            match value {
                Some(v) => self.scope.set_var(&name, v),
                None => self.scope.fail_var(&name),
            }
        }
        for (name, rule, given) in rules {
            self.check_rule(&name, rule, given);
        }
        for (name, g) in given {
            if declared.contains_key(name) {
                continue;
            }
            let names: Vec<&str> = declared.keys().map(String::as_str).collect();
            let message = format!(
                "a value was given for variable {name:?}, which is not declared{}",
                suggestion(name, &names)
            );
            match &g.origin {
                // The environment holds many NOMAD_VAR_ values for other jobs.
                Origin::Env => {}
                Origin::Cli => self.error(None, "", message),
                Origin::File { file, line, column } => self.errors.push(Diagnostic {
                    file: file.clone(),
                    line: *line,
                    column: *column,
                    message,
                }),
            }
        }
        let mut seen: BTreeMap<String, ()> = BTreeMap::new();
        for b in locals {
            self.no_label(b, "");
            for s in b.body.iter() {
                match s {
                    Structure::Attribute(a) => {
                        let name = a.key.as_str();
                        if seen.insert(name.to_string(), ()).is_some() {
                            self.error(
                                a.key.span(),
                                "locals",
                                format!("local {name:?} is defined twice"),
                            );
                        } else {
                            self.scope.add_local(name, &a.value);
                        }
                    }
                    Structure::Block(inner) => self.error(
                        inner.ident.span(),
                        "locals",
                        "only `name = value` attributes go in a locals block",
                    ),
                }
            }
        }
    }

    /// Checks one `validation { condition, error_message }` rule of variable `name`.
    /// A failed rule is an error at its condition that names where the value came from.
    fn check_rule(&mut self, name: &str, rule: &Block, given: Option<&GivenVar>) {
        let path = format!("variable {name:?} > validation");
        self.no_label(rule, &path);
        let (attrs, _) = self.items(&rule.body, &path, &schema::VALIDATION);
        let condition = attrs.iter().find(|a| a.key.as_str() == "condition");
        let message = attrs.iter().find(|a| a.key.as_str() == "error_message");
        let (Some(condition), Some(message)) = (condition, message) else {
            self.error(
                rule.ident.span(),
                &path,
                "a validation block needs both `condition` and `error_message`",
            );
            return;
        };
        let Some(text) = self.string(message, &path) else {
            return;
        };
        let Some(ok) = self.value(condition, &path) else {
            return;
        };
        match to_bool(&ok) {
            Some(true) => {}
            Some(false) => {
                let source = given
                    .map(|g| g.origin.describe())
                    .unwrap_or_else(|| "from its default".to_string());
                let value = self.scope.var_value(name).unwrap_or(Value::Null);
                self.error(
                    condition.value.span(),
                    "",
                    format!(
                        "invalid value for variable {name:?}: {text} (value {value} {source}, \
                         checked by this validation rule)"
                    ),
                );
            }
            None => self.error(
                condition.value.span(),
                &path,
                format!("condition must be a bool, got {}", type_name(&ok)),
            ),
        }
    }

    /// Evaluates every local once, so a broken one is reported even if nothing uses it.
    pub fn check_locals(&mut self) {
        for name in self.scope.local_names() {
            if let Err(e) = self.scope.local(&name, None) {
                if e.is_reported() {
                    continue;
                }
                self.error(e.span, "locals", format!("local {name:?}: {}", e.message));
            }
        }
    }
}
