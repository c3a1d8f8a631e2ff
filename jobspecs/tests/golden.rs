//! Golden files: the JSON `drover job run -output` prints for a representative set of
//! jobs, compared exactly with jobspecs/tests/golden/<name>.json. `UPDATE_GOLDEN=1`
//! (re)writes them. Shared jobs are skipped with a note when the shared directory is absent.

use std::path::{Path, PathBuf};

const SHARED: &[&str] = &[
    "command__asset__example.nomad.hcl",
    "command__asset__example-short.nomad.hcl",
    "e2e__spread__input__multiple_spread.nomad",
    "e2e__rescheduling__input__rescheduling_canary.nomad",
    "e2e__lifecycle__inputs__service.nomad",
    "e2e__affinities__input__multiple_affinities.nomad",
    "command__testdata__example-short.json",
];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("DROVER_SHARED_JOBSPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../../shared/jobspecs"));
    dir.is_dir().then_some(dir)
}

/// The name of the golden file: the job file's name with `.json` appended.
fn golden_path(job_file: &Path) -> PathBuf {
    let name = job_file.file_name().unwrap().to_string_lossy();
    manifest().join("tests/golden").join(format!("{name}.json"))
}

/// What `drover job run -output` prints for the job file.
fn render(job_file: &Path) -> String {
    let job = jobspecs::parse_file(job_file)
        .unwrap_or_else(|d| panic!("{}: does not parse:\n{d}", job_file.display()));
    let mut out = serde_json::to_string_pretty(&serde_json::json!({ "Job": job })).unwrap();
    out.push('\n');
    out
}

fn job_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(manifest().join("examples"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
        .collect();
    files.sort();
    match shared_dir() {
        Some(dir) => {
            for name in SHARED {
                let path = dir.join(name);
                assert!(path.exists(), "shared job {} is missing", path.display());
                files.push(path);
            }
        }
        None => eprintln!(
            "note: shared jobspecs absent; skipping the golden files of {}",
            SHARED.join(", ")
        ),
    }
    files
}

#[test]
fn job_output_matches_golden_files() {
    let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let mut mismatched = Vec::new();
    for file in job_files() {
        let golden = golden_path(&file);
        let actual = render(&file);
        if update {
            std::fs::write(&golden, &actual).unwrap();
            eprintln!("wrote {}", golden.display());
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
                golden.display()
            )
        });
        if expected != actual {
            let line = expected
                .lines()
                .zip(actual.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
            eprintln!(
                "{}: differs from line {}:\n  expected: {:?}\n  actual:   {:?}",
                golden.display(),
                line + 1,
                expected.lines().nth(line),
                actual.lines().nth(line)
            );
            mismatched.push(golden.display().to_string());
        }
    }
    assert!(
        mismatched.is_empty(),
        "golden files differ (UPDATE_GOLDEN=1 rewrites them): {mismatched:#?}"
    );
}

/// Nomad's defaults, checked by value so a golden rewrite cannot silently lose them.
#[test]
fn nomad_init_example_gets_nomads_defaults() {
    let Some(dir) = shared_dir() else {
        eprintln!("note: shared jobspecs absent; skipping");
        return;
    };
    let job = jobspecs::parse_file(&dir.join("command__asset__example-short.nomad.hcl")).unwrap();
    let v = serde_json::to_value(&job).unwrap();
    assert_eq!(v["Region"], "global");
    assert_eq!(v["Namespace"], "default");
    assert_eq!(v["Priority"], 50);
    assert_eq!(v["Type"], "service");
    let group = &v["TaskGroups"][0];
    assert_eq!(group["Count"], 1);
    let task = &group["Tasks"][0];
    assert_eq!(task["KillTimeout"], 5_000_000_000i64);
    assert_eq!(
        group["ReschedulePolicy"],
        serde_json::json!({
            "Attempts": 0,
            "Interval": 0,
            "Delay": 30_000_000_000i64,
            "DelayFunction": "exponential",
            "MaxDelay": 3_600_000_000_000i64,
            "Unlimited": true,
        })
    );
}
