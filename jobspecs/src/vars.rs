//! `variable "x" { ... }` declarations, their `-var` values (strings converted to the
//! declared type), and `locals { ... }` blocks.

use crate::diag::suggestion;
use crate::eval::Scope;
use crate::reader::Reader;
use crate::schema;
use crate::value::{to_bool, to_f64, to_str, type_name, Value};
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span;
use std::collections::BTreeMap;

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
            let v = Scope::new(s, None).eval(&expr).map_err(|e| e.message)?;
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
        given: &BTreeMap<String, String>,
    ) {
        let mut declared: BTreeMap<String, usize> = BTreeMap::new();
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
            let (attrs, _) = self.items(&b.body, &path, &schema::VARIABLE);
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
            let value = if let Some(s) = given.get(&name) {
                match from_cli(s, &ty) {
                    Ok(v) => Some(v),
                    Err(m) => {
                        self.error(
                            b.labels[0].span(),
                            &path,
                            format!("invalid value for variable {name:?}: {m}"),
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
                         pass one with -var {name}=VALUE"
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
        for name in given.keys() {
            if !declared.contains_key(name) {
                let names: Vec<&str> = declared.keys().map(String::as_str).collect();
                self.error(
                    None,
                    "",
                    format!(
                        "a value was given for variable {name:?}, which is not declared{}",
                        suggestion(name, &names)
                    ),
                );
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
