//! Jobspecs: Nomad job files (HCL2, or the API's JSON) -> `api::Job`.
//!
//! The pipeline: hcl-edit parses the file with byte spans; `variable` and `locals` blocks
//! build an expression scope (`vars`); the `job` block is lowered block by block
//! (`lower`, `parts`) through a `Reader` that collects every problem as a
//! `file:line:column: message` diagnostic; then Nomad's defaults are applied
//! (`api::Job::canonicalize`) and the job is validated. `dynamic` blocks are expanded
//! before lowering (`dynamic`). Nomad blocks Drover does not run yet (template,
//! artifact...) are accepted and reported as warnings; the few features Drover rejects
//! on purpose (Consul Connect, Vault, CSI volumes) are positioned errors saying so.
//!
//! Filesystem functions (`file()` and the rest of `FILESYSTEM_FUNCTIONS`) read
//! files only where the caller says so (`Files`): the `parse_file*` functions read
//! relative to the job file's directory, as Nomad's CLI does; text parsed with
//! `parse_str*` has the filesystem off, as a server parsing a submitted job must.
//! Every count and duration is range-checked (`api::MAX_AMOUNT`, `api::MAX_DURATION`)
//! at its value, and names that become paths on a client are checked at their label.

pub mod cron;
pub mod diag;
pub mod duration;
mod dynamic;
mod eval;
mod features;
mod funcs;
pub mod hclfmt;
mod json;
mod lower;
mod parts;
mod reader;
mod schema;
mod value;
mod vars;

pub use diag::{Diagnostic, Diagnostics};
pub use eval::Files;
pub use funcs::FILESYSTEM_FUNCTIONS;
pub use vars::{parse_var_file, parse_variables_text, read_var_file, GivenValue, GivenVar, Origin};

use diag::SourceMap;
use eval::Scope;
use hcl_edit::structure::Structure;
use hcl_edit::Span;
use reader::Reader;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use vars::GivenVar as Given;

/// A parsed job and the warnings about what Drover ignored in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub job: api::Job,
    pub warnings: Vec<Diagnostic>,
}

/// Where variable values come from besides the defaults in the job file. Later sources
/// win, as in Nomad: `NOMAD_VAR_<name>` environment variables, then the variables files
/// in order, then `-var` values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VarInputs {
    /// `-var name=value`.
    pub cli: BTreeMap<String, String>,
    /// `-var-file f.hcl` (HCL `name = value` lines) or `f.json` (an object).
    pub files: Vec<PathBuf>,
    /// `NOMAD_VAR_<name>` values, by name; values for undeclared variables are ignored.
    pub env: BTreeMap<String, String>,
    /// Values already read, such as the `Variables` text of `PUT /v1/jobs/parse`
    /// (see `parse_var_file`); they rank after the files and before `-var`.
    pub values: Vec<(String, GivenVar)>,
}

impl VarInputs {
    /// Just `-var` values.
    pub fn cli(vars: &BTreeMap<String, String>) -> Self {
        VarInputs {
            cli: vars.clone(),
            ..VarInputs::default()
        }
    }

    /// The `NOMAD_VAR_<name>` variables of this process's environment.
    pub fn env_vars() -> BTreeMap<String, String> {
        std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("NOMAD_VAR_")
                    .filter(|n| !n.is_empty())
                    .map(|n| (n.to_string(), v))
            })
            .collect()
    }

    /// Every given value by name, the highest-precedence one for each; a variables file
    /// that cannot be read or parsed is an error in that file.
    fn collect(&self) -> Result<BTreeMap<String, Given>, Diagnostics> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.env {
            out.insert(
                k.clone(),
                Given {
                    value: GivenValue::Text(v.clone()),
                    origin: Origin::Env,
                },
            );
        }
        let mut errors = Vec::new();
        for f in &self.files {
            match read_var_file(f) {
                Ok(values) => out.extend(values),
                Err(d) => errors.extend(d.0),
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        out.extend(self.values.iter().cloned());
        for (k, v) in &self.cli {
            out.insert(
                k.clone(),
                Given {
                    value: GivenValue::Text(v.clone()),
                    origin: Origin::Cli,
                },
            );
        }
        Ok(out)
    }
}

/// Parses a job file with variable values from every source, returning the warnings too.
/// `file()` in the job reads relative to the job file's directory.
pub fn parse_file_with_inputs(path: &Path, inputs: &VarInputs) -> Result<Parsed, Diagnostics> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| Diagnostic {
        file: file.clone(),
        line: 1,
        column: 1,
        message: format!("cannot read the job file: {e}"),
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_str_with_files(&src, &file, inputs, Files::RelativeTo(dir))
}

/// Parses job text with variable values from every source, returning the warnings too.
/// The filesystem is off: `file()` and HCL's other filesystem functions are errors, so
/// this is what a server uses on text it was sent.
pub fn parse_str_with_inputs(
    src: &str,
    filename: &str,
    inputs: &VarInputs,
) -> Result<Parsed, Diagnostics> {
    parse_str_with_files(src, filename, inputs, Files::Disabled)
}

/// Parses job text with variable values from every source and `files` as what
/// `file()` may read (the CLI reading standard input uses the working directory).
pub fn parse_str_with_files(
    src: &str,
    filename: &str,
    inputs: &VarInputs,
    files: Files,
) -> Result<Parsed, Diagnostics> {
    let given = inputs.collect()?;
    parse_given(src, filename, &given, files)
}

/// Parses a job file: `.json` as API JSON, anything else (`.hcl`, `.nomad`) as HCL2.
pub fn parse_file(path: &Path) -> Result<api::Job, Diagnostics> {
    parse_file_with_vars(path, &BTreeMap::new())
}

/// Parses a job file with `-var` values.
pub fn parse_file_with_vars(
    path: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<api::Job, Diagnostics> {
    parse_file_full(path, vars).map(|p| p.job)
}

/// Parses a job file with `-var` values, returning the warnings too.
pub fn parse_file_full(
    path: &Path,
    vars: &BTreeMap<String, String>,
) -> Result<Parsed, Diagnostics> {
    parse_file_with_inputs(path, &VarInputs::cli(vars))
}

/// Parses a job from text; `filename` is used in messages. Text ending in `.json` or
/// starting with `{` is API JSON. The filesystem is off (see `parse_str_with_files`).
pub fn parse_str(src: &str, filename: &str) -> Result<api::Job, Diagnostics> {
    parse_str_with_vars(src, filename, &BTreeMap::new())
}

/// Parses a job from text with `-var` values (converted to each variable's type).
pub fn parse_str_with_vars(
    src: &str,
    filename: &str,
    vars: &BTreeMap<String, String>,
) -> Result<api::Job, Diagnostics> {
    parse_str_full(src, filename, vars).map(|p| p.job)
}

/// Parses a job from text with `-var` values, returning the warnings too.
pub fn parse_str_full(
    src: &str,
    filename: &str,
    vars: &BTreeMap<String, String>,
) -> Result<Parsed, Diagnostics> {
    parse_str_with_inputs(src, filename, &VarInputs::cli(vars))
}

fn parse_given(
    src: &str,
    filename: &str,
    vars: &BTreeMap<String, Given>,
    files: Files,
) -> Result<Parsed, Diagnostics> {
    let sm = SourceMap::new(filename, src);
    let is_json = filename.ends_with(".json") || src.trim_start().starts_with('{');
    let (mut job, job_offset, warnings) = if is_json {
        let (job, offset) = json::parse(src, filename)?;
        (job, offset, Vec::new())
    } else {
        parse_hcl(&sm, vars, files)?
    };
    job.canonicalize();
    let errors: Vec<Diagnostic> = job
        .validate()
        .into_iter()
        .filter(|m| !is_checked_in_place(m) || is_json)
        .map(|m| {
            let at = if is_json && m.starts_with("job ID") {
                src.find("\"ID\"").unwrap_or(job_offset)
            } else {
                job_offset
            };
            let m = if is_json {
                m
            } else {
                format!("in job {:?}: {m}", job.id)
            };
            sm.at(Some(at..at), m)
        })
        .collect();
    if errors.is_empty() {
        Ok(Parsed { job, warnings })
    } else {
        Err(Diagnostics(errors))
    }
}

/// `api::Job::validate` messages that HCL lowering already reports at their own position.
fn is_checked_in_place(message: &str) -> bool {
    [
        "is defined twice",
        "missing driver",
        "no tasks",
        "has no task groups",
        "job type",
    ]
    .iter()
    .any(|p| message.contains(p))
}

type Lowered = (api::Job, usize, Vec<Diagnostic>);

/// The HCL parser refuses a whole number that does not fit in 64 bits with a generic
/// syntax error; when the failing line holds one, say so.
fn huge_number_hint(line: &str) -> String {
    let huge = line
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() >= 19 && run.parse::<i64>().is_err());
    match huge {
        Some(n) => format!(
            " (the number {n} is too large: whole numbers must fit in 64 bits, at most {})",
            i64::MAX
        ),
        None => String::new(),
    }
}

fn parse_hcl(
    sm: &SourceMap<'_>,
    vars: &BTreeMap<String, Given>,
    files: Files,
) -> Result<Lowered, Diagnostics> {
    let src = sm.src();
    let body = hcl_edit::parser::parse_body(src).map_err(|e| {
        let line = e.location().line();
        Diagnostic {
            file: sm.file().to_string(),
            line,
            column: e.location().column(),
            message: format!(
                "syntax error: {}{}",
                e.message(),
                huge_number_hint(src.lines().nth(line.saturating_sub(1)).unwrap_or(""))
            ),
        }
    })?;
    let mut reader = Reader::new(sm, Scope::new(src, files));
    let (_, blocks) = reader.items(&body, "", &schema::FILE);
    let mut variables = Vec::new();
    let mut locals = Vec::new();
    let mut jobs = Vec::new();
    for b in blocks {
        match b.ident.as_str() {
            "variable" => variables.push(b),
            "locals" => locals.push(b),
            _ => jobs.push(b),
        }
    }
    reader.declare(&variables, &locals, vars);
    reader.check_locals();
    let mut job = api::Job::default();
    let mut job_offset = 0;
    match jobs.as_slice() {
        [] => {
            if !body
                .iter()
                .any(|s| matches!(s, Structure::Block(b) if b.ident.as_str() == "job"))
            {
                reader.error(None, "", "no `job \"name\" { ... }` block in this file");
            }
        }
        [first, rest @ ..] => {
            for extra in rest {
                reader.error(
                    extra.ident.span(),
                    "",
                    "only one job block is allowed per file",
                );
            }
            job_offset = first.span().map(|s| s.start).unwrap_or(0);
            let mut expanded = (*first).clone();
            if src.contains("dynamic") {
                reader.expand_dynamic(&mut expanded.body);
            }
            job = reader.job(&expanded);
        }
    }
    let mut errors = reader.errors;
    if !errors.is_empty() {
        errors.sort_by_key(|d| (d.line, d.column));
        // One cause reached through several uses (a broken local) is reported once; the
        // unpositioned messages at 1:1 are all distinct.
        errors.dedup_by(|a, b| {
            (a.line, a.column) == (b.line, b.column)
                && ((a.line, a.column) != (1, 1) || a.message == b.message)
        });
        return Err(Diagnostics(errors));
    }
    let mut warnings = reader.warnings;
    warnings.sort_by_key(|d| (d.line, d.column));
    Ok((job, job_offset, warnings))
}

#[cfg(test)]
mod tests;
