//! `drover fmt`: rewrites job files, agent configuration and ACL policies (`.nomad`,
//! `.hcl`) in canonical layout (`jobspecs::hclfmt`), as `nomad fmt` does.
//!
//! Exit codes follow Nomad's: 0 when everything was formatted (or, with `-check`, already
//! was), 1 when a file did not parse, could not be read or written, or (with `-check`)
//! would change.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct FmtArgs {
    /// Write nothing; list the files that are not in canonical layout and exit 1 if any.
    #[arg(long)]
    pub check: bool,
    /// Overwrite the files that change (-write=false leaves them alone).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub write: bool,
    /// Print the names of the files that change (-list=false does not).
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", require_equals = true, value_name = "BOOL")]
    pub list: bool,
    /// Also format the files of subdirectories.
    #[arg(long)]
    pub recursive: bool,
    /// Files or directories (default: the current directory); `-` reads standard input
    /// and writes the result to standard output.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// What to do with a file once it is formatted.
#[derive(Debug, Clone, Copy)]
struct Mode {
    list: bool,
    check: bool,
    write_file: bool,
    write_stdout: bool,
}

/// What formatting the files came to.
#[derive(Debug, Default)]
struct Outcome {
    /// Problems, each a sentence naming its file.
    errors: Vec<String>,
    /// With `-check`: a file is not in canonical layout.
    check_failed: bool,
}

/// Formats what `args` names; the exit code.
pub fn run(args: FmtArgs) -> i32 {
    let stdin = args.paths.first().is_some_and(|p| super::is_stdin(p));
    let mut mode = Mode {
        list: args.list && !stdin,
        check: args.check,
        write_file: args.write && !args.check && !stdin,
        write_stdout: stdin,
    };
    // Neither listing nor writing files: show the result instead, as Nomad does.
    if !mode.list && !mode.write_file {
        mode.write_stdout = true;
    }
    let mut outcome = Outcome::default();
    if stdin {
        let mut src = String::new();
        match std::io::stdin().read_to_string(&mut src) {
            Ok(_) => process_text(&src, "<stdin>", None, mode, &mut outcome),
            Err(e) => outcome
                .errors
                .push(format!("Failed to read standard input: {e}")),
        }
    } else {
        let paths = if args.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            args.paths
        };
        for path in &paths {
            match std::fs::metadata(path) {
                Err(_) => outcome
                    .errors
                    .push(format!("No file or directory at {}", path.display())),
                Ok(m) if m.is_dir() => process_dir(path, args.recursive, mode, &mut outcome),
                Ok(_) if is_hcl_file(path) => process_file(path, mode, &mut outcome),
                Ok(_) => outcome.errors.push(format!(
                    "{}: only .nomad and .hcl files can be formatted",
                    path.display()
                )),
            }
        }
    }
    for e in &outcome.errors {
        eprintln!("{e}");
    }
    if !outcome.errors.is_empty() || outcome.check_failed {
        1
    } else {
        0
    }
}

fn is_hcl_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("nomad" | "hcl")
    )
}

/// The `.nomad` and `.hcl` files of `dir` in name order, and those of its subdirectories
/// with `recursive`.
fn process_dir(dir: &Path, recursive: bool, mode: Mode, outcome: &mut Outcome) {
    let mut entries: Vec<_> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(e) => {
            outcome
                .errors
                .push(format!("Failed to list directory {}: {e}", dir.display()));
            return;
        }
    };
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                process_dir(&path, recursive, mode, outcome);
            }
        } else if is_hcl_file(&path) {
            process_file(&path, mode, outcome);
        }
    }
}

fn process_file(path: &Path, mode: Mode, outcome: &mut Outcome) {
    match std::fs::read_to_string(path) {
        Ok(src) => process_text(&src, &path.display().to_string(), Some(path), mode, outcome),
        Err(e) => outcome
            .errors
            .push(format!("Failed to read file {}: {e}", path.display())),
    }
}

fn process_text(src: &str, name: &str, path: Option<&Path>, mode: Mode, outcome: &mut Outcome) {
    let out = match jobspecs::hclfmt::format(src, name) {
        Ok(out) => out,
        Err(d) => {
            outcome.errors.push(d.to_string());
            return;
        }
    };
    if out != src {
        if mode.list {
            println!("{name}");
        }
        if mode.check {
            outcome.check_failed = true;
        }
        if let (true, Some(path)) = (mode.write_file, path) {
            if let Err(e) = write_in_place(path, &out) {
                outcome
                    .errors
                    .push(format!("Failed to write file {name}: {e}"));
                return;
            }
        }
    }
    if mode.write_stdout {
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

/// Replaces the file's contents through a temporary file beside it, so an interrupted
/// write never leaves half a job file; the file keeps its permissions.
fn write_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    // Through a symlink, the file it names is rewritten, not the link replaced.
    let path = &std::fs::canonicalize(path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.drover-fmt.{}", std::process::id()));
    let perms = std::fs::metadata(path)?.permissions();
    let result = (|| {
        std::fs::write(&tmp, text)?;
        std::fs::set_permissions(&tmp, perms)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
