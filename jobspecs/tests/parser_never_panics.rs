//! The parser never panics: arbitrary text, HCL-like token soup, mutations of real job
//! files and JSON-ish text all come back as `Ok` or `Err`. A panic fails the property.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

const CASES: u32 = 5_000;

static TOTAL: AtomicUsize = AtomicUsize::new(0);
/// Inputs that parsed into a job (shows the generators reach past the syntax stage).
static PARSED_OK: AtomicUsize = AtomicUsize::new(0);

/// Runs `strategy` through `check` for `CASES` deterministic cases, printing the count.
fn run<S: Strategy>(name: &str, seed: u8, strategy: S, check: impl Fn(S::Value))
where
    S::Value: std::fmt::Debug,
{
    let config = Config {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let count = AtomicUsize::new(0);
    let ok_before = PARSED_OK.load(Ordering::Relaxed);
    let result = runner.run(&strategy, |input| {
        count.fetch_add(1, Ordering::Relaxed);
        check(input);
        Ok(())
    });
    let n = count.load(Ordering::Relaxed);
    let total = TOTAL.fetch_add(n, Ordering::Relaxed) + n;
    let ok = PARSED_OK.load(Ordering::Relaxed) - ok_before;
    eprintln!("{name}: {n} inputs ran, ~{ok} parsed Ok (running total in this binary: {total})");
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    assert!(n >= CASES as usize, "{name}: only {n} inputs ran");
}

fn parse(src: &str, filename: &str) {
    // Ok or Err are both fine; only a panic (which fails the test) is not.
    if jobspecs::parse_str(src, filename).is_ok() {
        PARSED_OK.fetch_add(1, Ordering::Relaxed);
    }
}

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DROVER_SHARED_JOBSPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/jobspecs"));
    dir.is_dir().then_some(dir)
}

/// The texts to mutate: the shared job files, or the crate's examples when those are absent.
fn corpus() -> &'static Vec<(String, String)> {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = shared_dir().unwrap_or_else(|| {
            let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
            eprintln!(
                "note: shared jobspecs absent; mutating {} instead",
                examples.display()
            );
            examples
        });
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| ["hcl", "nomad", "json"].contains(&&*e.to_string_lossy()))
            })
            .filter_map(|p| {
                let text = std::fs::read_to_string(&p).ok()?;
                Some((p.file_name()?.to_string_lossy().to_string(), text))
            })
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no job files in {}", dir.display());
        files
    })
}

const HCL_TOKENS: &[&str] = &[
    "job",
    "group",
    "task",
    "variable",
    "variables",
    "dynamic",
    "locals",
    "content",
    "for_each",
    "iterator",
    "labels",
    "config",
    "resources",
    "network",
    "port",
    "service",
    "check",
    "constraint",
    "affinity",
    "spread",
    "template",
    "periodic",
    "update",
    "restart",
    "reschedule",
    "meta",
    "env",
    "var",
    "local",
    "attr",
    "node",
    "count",
    "cpu",
    "memory",
    "driver",
    "type",
    "default",
    "validation",
    "condition",
    "error_message",
    "for",
    "in",
    "if",
    "endif",
    "else",
    "endfor",
    "null",
    "true",
    "false",
    "each",
    "key",
    "value",
    "file",
    "jsonencode",
    "format",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "\"",
    "${",
    "%{",
    "}",
    "~}",
    "<<EOF\n",
    "<<-EOT\n",
    "\nEOF\n",
    "\nEOT\n",
    "=",
    "==",
    "!=",
    "=>",
    ":",
    "?",
    ",",
    ".",
    "...",
    "*",
    "+",
    "-",
    "/",
    "%",
    "!",
    "&&",
    "||",
    "<",
    ">",
    "#",
    "//",
    "/*",
    "*/",
    "\\",
    "\\n",
    "$$",
    "%%",
    "0",
    "1",
    "-1",
    "42",
    "3.14",
    "1e9",
    "99999999999999999999999",
    "0x1F",
    "\n",
    "\n",
    " ",
    "  ",
    "\t",
    "\r\n",
    "é",
    "\u{0}",
    "\u{feff}",
    "\"job\"",
    "\"x\"",
    "\"${var.x}\"",
    "\"%{ if true }a%{ endif }\"",
];

fn hcl_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HCL_TOKENS), 0..80).prop_map(|t| t.concat())
}

/// A grammar-shaped generator: nested blocks with attributes, often near-valid.
fn hcl_blocks() -> impl Strategy<Value = String> {
    let ident = prop::sample::select(&HCL_TOKENS[..56]);
    let value = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[a-z${}%~ .\\[\\]]{0,12}\"",
        Just("var.x".to_string()),
        Just("[1, \"a\", null]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("<<EOF\nline ${x}\nEOF".to_string()),
    ];
    let attr = (ident.clone(), value).prop_map(|(k, v)| format!("{k} = {v}\n"));
    let leaf = prop::collection::vec(attr, 0..4).prop_map(|a| a.concat());
    leaf.prop_recursive(4, 32, 4, move |inner| {
        (
            ident.clone(),
            prop::option::of("[a-z\"]{0,6}"),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(kind, label, body)| match label {
                Some(l) => format!("{kind} \"{l}\" {{\n{}}}\n", body.concat()),
                None => format!("{kind} {{\n{}}}\n", body.concat()),
            })
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    DeleteChar(usize),
    DuplicateChar(usize),
    SwapChars(usize, usize),
    InsertChar(usize, char),
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let insert_char = prop_oneof![
        prop::sample::select(&['{', '}', '"', '$', '%', '=', '[', ']', '\n', '#', '\\', '<'][..]),
        any::<char>(),
    ];
    let insert_line = prop_oneof![hcl_soup(), "[ -~]{0,30}"];
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteChar),
        any::<usize>().prop_map(Mutation::DuplicateChar),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapChars(a, b)),
        (any::<usize>(), insert_char).prop_map(|(a, c)| Mutation::InsertChar(a, c)),
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), insert_line).prop_map(|(a, l)| Mutation::InsertLine(a, l)),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let nc = chars.len().max(1);
    let nl = lines.len().max(1);
    let by_chars = |chars: Vec<char>| chars.into_iter().collect::<String>();
    match m {
        Mutation::DeleteChar(i) if !chars.is_empty() => {
            chars.remove(i % nc);
            by_chars(chars)
        }
        Mutation::DuplicateChar(i) if !chars.is_empty() => {
            let c = chars[i % nc];
            chars.insert(i % nc, c);
            by_chars(chars)
        }
        Mutation::SwapChars(a, b) if !chars.is_empty() => {
            chars.swap(a % nc, b % nc);
            by_chars(chars)
        }
        Mutation::InsertChar(i, c) => {
            chars.insert(i % (chars.len() + 1), *c);
            by_chars(chars)
        }
        Mutation::DeleteLine(i) if !lines.is_empty() => {
            lines.remove(i % nl);
            lines.join("\n")
        }
        Mutation::DuplicateLine(i) if !lines.is_empty() => {
            let l = lines[i % nl].clone();
            lines.insert(i % nl, l);
            lines.join("\n")
        }
        Mutation::SwapLines(a, b) if !lines.is_empty() => {
            lines.swap(a % nl, b % nl);
            lines.join("\n")
        }
        Mutation::InsertLine(i, l) => {
            lines.insert(i % (lines.len() + 1), l.clone());
            lines.join("\n")
        }
        _ => text.to_string(),
    }
}

#[test]
fn arbitrary_strings_never_panic() {
    run("arbitrary strings", 1, any::<String>(), |s| {
        parse(&s, "fuzz.hcl");
    });
}

#[test]
fn hcl_token_soup_never_panics() {
    run(
        "hcl token soup",
        2,
        prop_oneof![hcl_soup(), hcl_blocks()],
        |s| parse(&s, "fuzz.nomad"),
    );
}

#[test]
fn mutated_job_files_never_panic() {
    let files = corpus();
    run(
        "mutated job files",
        3,
        (0..files.len(), prop::collection::vec(mutation(), 1..4)),
        |(i, ms)| {
            let (name, text) = &files[i];
            let mutated = ms.iter().fold(text.clone(), |t, m| apply(&t, m));
            parse(&mutated, name);
        },
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let key = prop_oneof![
        prop::sample::select(
            &[
                "Job",
                "ID",
                "Name",
                "Type",
                "Region",
                "Priority",
                "TaskGroups",
                "Tasks",
                "Count",
                "Driver",
                "Config",
                "Resources",
                "CPU",
                "MemoryMB",
                "Networks",
                "DynamicPorts",
                "ReservedPorts",
                "Label",
                "Constraints",
                "LTarget",
                "RTarget",
                "Operand",
                "Periodic",
                "Spec",
                "Datacenters",
                "Services",
                "Checks",
                "Meta",
                "Env",
                "Templates",
                "Update",
                "RestartPolicy",
                "ReschedulePolicy",
                "KillTimeout",
            ][..]
        )
        .prop_map(str::to_string),
        "[A-Za-z]{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn json_ish_text_never_panics() {
    let json_soup = prop::collection::vec(
        prop::sample::select(
            &[
                "{",
                "}",
                "[",
                "]",
                ":",
                ",",
                "\"",
                "\"Job\"",
                "\"TaskGroups\"",
                "\"Tasks\"",
                "\"ID\"",
                "\"Count\"",
                "null",
                "true",
                "false",
                "0",
                "-1",
                "1e400",
                "1.5",
                "\"\\u0000\"",
                "\"\\ud800\"",
                " ",
                "\n",
            ][..],
        ),
        0..60,
    )
    .prop_map(|t| format!("{{{}", t.concat()));
    let structured = json_value().prop_map(|v| {
        let wrapped = if v.is_object() {
            serde_json::json!({ "Job": v })
        } else {
            v
        };
        serde_json::to_string(&wrapped).unwrap()
    });
    let truncated = (json_value(), any::<usize>()).prop_map(|(v, cut)| {
        let s = serde_json::to_string(&serde_json::json!({ "Job": v })).unwrap();
        let cut = cut % (s.len() + 1);
        let cut = (0..=cut)
            .rev()
            .find(|&c| s.is_char_boundary(c))
            .unwrap_or(0);
        s[..cut].to_string()
    });
    run(
        "json-ish text",
        4,
        prop_oneof![json_soup, structured, truncated, any::<String>()],
        |s| parse(&s, "fuzz.json"),
    );
}
