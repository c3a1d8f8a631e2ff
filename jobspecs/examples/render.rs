//! Prints a job file as the API JSON Drover would submit, like `nomad job run -output`.
//!
//! `cargo run -p jobspecs --example render -- jobspecs/examples/sleep.hcl [-var NAME=VALUE]...`

use std::collections::BTreeMap;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: render FILE [-var NAME=VALUE]...");
        std::process::exit(2);
    };
    let mut vars = BTreeMap::new();
    while let Some(a) = args.next() {
        let pair = if a == "-var" {
            args.next().unwrap_or_default()
        } else {
            a
        };
        if let Some((k, v)) = pair.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    match jobspecs::parse_file_full(std::path::Path::new(&path), &vars) {
        Ok(parsed) => {
            for w in &parsed.warnings {
                eprintln!("warning: {w}");
            }
            let json = serde_json::json!({ "Job": parsed.job });
            println!("{}", serde_json::to_string_pretty(&json).unwrap());
        }
        Err(diags) => {
            eprintln!("{diags}");
            std::process::exit(1);
        }
    }
}
