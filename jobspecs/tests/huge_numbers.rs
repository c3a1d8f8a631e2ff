//! Numbers in job files, from tiny to absurd, in every count and duration slot: the
//! parser never panics, and a job it accepts holds exactly the number written (never a
//! saturated or wrapped one) inside the range the server accepts. Out-of-range values
//! are positioned errors.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestRng, TestRunner};

const CASES: u32 = 3_000;

/// Where a whole number goes (`{}` in the group body or the task body), the range the
/// server accepts there, and how to read it back from the parsed job.
type Slot = (
    &'static str,
    &'static str,
    (i128, i128),
    fn(&api::Job) -> i64,
);

const AMOUNT: i128 = api::MAX_AMOUNT as i128;
const DURATION: i128 = api::MAX_DURATION as i128;

const SLOTS: &[Slot] = &[
    ("count = {}", "", (0, AMOUNT), |j| j.task_groups[0].count),
    ("", "resources {\n cpu = {}\n }", (1, AMOUNT), |j| {
        j.task_groups[0].tasks[0].resources.as_ref().unwrap().cpu
    }),
    ("", "resources {\n memory = {}\n }", (10, AMOUNT), |j| {
        j.task_groups[0].tasks[0]
            .resources
            .as_ref()
            .unwrap()
            .memory_mb
    }),
    ("restart {\n attempts = {}\n }", "", (0, AMOUNT), |j| {
        j.task_groups[0].restart_policy.as_ref().unwrap().attempts
    }),
    ("update {\n max_parallel = {}\n }", "", (0, AMOUNT), |j| {
        j.task_groups[0].update.as_ref().unwrap().max_parallel
    }),
    ("ephemeral_disk {\n size = {}\n }", "", (0, AMOUNT), |j| {
        j.task_groups[0].ephemeral_disk.as_ref().unwrap().size_mb
    }),
    (
        "network {\n port \"p\" {\n static = {}\n }\n }",
        "",
        (0, 65535),
        |j| j.task_groups[0].networks[0].reserved_ports[0].value,
    ),
    // A bare number as a duration is nanoseconds (0 is left to the 5s default).
    ("", "kill_timeout = {}", (1, DURATION), |j| {
        j.task_groups[0].tasks[0].kill_timeout
    }),
    ("shutdown_delay = {}", "", (0, DURATION), |j| {
        j.task_groups[0].shutdown_delay.unwrap()
    }),
];

fn job(group: &str, task: &str) -> String {
    format!(
        "job \"n\" {{\n  group \"g\" {{\n{group}\n    task \"t\" {{\n      driver = \"exec\"\n{task}\n    }}\n  }}\n}}\n"
    )
}

fn runner(seed: u8) -> TestRunner {
    let config = Config {
        cases: CASES,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

#[test]
fn whole_numbers_in_every_slot_are_exact_when_in_range_and_refused_otherwise() {
    let mut runner = runner(7);
    // Small numbers around the bounds as often as long ones.
    let literal = prop_oneof![
        whole_literal(),
        (-20i64..70_000).prop_map(|n| n.to_string()),
    ];
    let strategy = (0..SLOTS.len(), literal);
    runner
        .run(&strategy, |(slot, literal)| {
            let (group, task, (lo, hi), read) = SLOTS[slot];
            let src = job(
                &group.replace("{}", &literal),
                &task.replace("{}", &literal),
            );
            let written: i128 = literal.parse().unwrap();
            let in_range = (lo..=hi).contains(&written);
            match jobspecs::parse_str(&src, "n.hcl") {
                Ok(job) => {
                    prop_assert!(in_range, "accepted out of range:\n{}", src);
                    prop_assert_eq!(i128::from(read(&job)), written, "{}", src);
                }
                Err(d) => {
                    prop_assert!(!in_range, "refused in range:\n{}\n{}", src, d);
                    for m in &d.0 {
                        prop_assert!(m.line > 2, "not at the value: {}", m);
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}

/// Whole-number literals from 1 to 37 digits (within i128), either sign.
fn whole_literal() -> impl Strategy<Value = String> {
    (any::<bool>(), "[1-9][0-9]{0,36}").prop_map(|(neg, d)| if neg { format!("-{d}") } else { d })
}

#[test]
fn duration_strings_are_exact_or_refused_never_negative_or_wrapped() {
    let mut runner = runner(11);
    let units = prop_oneof![
        Just(("ns", 1i128)),
        Just(("us", 1_000)),
        Just(("ms", 1_000_000)),
        Just(("s", 1_000_000_000)),
        Just(("m", 60_000_000_000)),
        Just(("h", 3_600_000_000_000)),
    ];
    let strategy = (any::<bool>(), "[0-9]{1,25}", units, any::<bool>());
    runner
        .run(&strategy, |(neg, digits, (unit, scale), in_task)| {
            let text = format!("{}{digits}{unit}", if neg { "-" } else { "" });
            let src = if in_task {
                job("", &format!("kill_timeout = \"{text}\""))
            } else {
                job(&format!("restart {{\n delay = \"{text}\"\n }}"), "")
            };
            let want = digits.parse::<i128>().unwrap() * scale * if neg { -1 } else { 1 };
            match jobspecs::parse_str(&src, "n.hcl") {
                Ok(job) => {
                    let got = if in_task {
                        job.task_groups[0].tasks[0].kill_timeout
                    } else {
                        job.task_groups[0].restart_policy.as_ref().unwrap().delay
                    };
                    // 0 becomes the default kill_timeout (5s), as in Nomad.
                    if !(in_task && want == 0) {
                        prop_assert_eq!(i128::from(got), want, "{}", src);
                    }
                    prop_assert!((0..=i128::from(api::MAX_DURATION)).contains(&want));
                }
                Err(d) => {
                    prop_assert!(
                        want < 0 || want > i128::from(api::MAX_DURATION),
                        "an in-range duration was refused: {}\n{}",
                        src,
                        d
                    );
                    prop_assert!(d.0.iter().all(|m| m.line > 1), "{}", d);
                }
            }
            Ok(())
        })
        .unwrap();
}
