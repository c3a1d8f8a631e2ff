//! Job validation: the checks a registered job must pass, each problem one sentence.
//!
//! Names follow Nomad's rules, and stricter ones where the client turns them into paths or
//! environment variables; every count and duration is range-checked so an absurd value is
//! refused here rather than overflowing later.

use super::*;

mod services;
pub use services::*;

impl Job {
    /// Checks a registered job must pass; each problem is one sentence.
    ///
    /// Names are checked as Nomad checks them, and more strictly where the client turns
    /// them into paths or environment variables (see `check_path_name`); every count and
    /// duration is checked for range, so an absurd value is refused here rather than
    /// overflowing later.
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        errs.extend(job_id_problem(&self.id));
        if self.name.contains('\0') {
            errs.push("job name contains a null character".to_string());
        } else if self.name.len() > MAX_TEXT_LEN {
            errs.push(format!(
                "job name is {} bytes long; the limit is {MAX_TEXT_LEN}",
                self.name.len()
            ));
        }
        // Empty is the default namespace (and node pool, region), filled in by canonicalize.
        if !self.namespace.is_empty() && !is_identifier(&self.namespace, false) {
            errs.push(format!(
                "namespace {:?} is not a valid namespace name: use 1 to {MAX_NAME_LEN} \
                 letters, digits and hyphens",
                self.namespace
            ));
        }
        if !self.node_pool.is_empty() && !is_identifier(&self.node_pool, true) {
            errs.push(format!(
                "node pool {:?} is not a valid node pool name: use 1 to {MAX_NAME_LEN} \
                 letters, digits, hyphens and underscores",
                self.node_pool
            ));
        }
        if let Some(m) = label_problem(&self.region) {
            errs.push(format!("region {:?} {m}", self.region));
        }
        for dc in &self.datacenters {
            if dc.is_empty() {
                errs.push("a job datacenter is an empty string".to_string());
            } else if let Some(m) = label_problem(dc) {
                errs.push(format!("datacenter {dc:?} {m}"));
            }
        }
        if ![
            JOB_TYPE_SERVICE,
            JOB_TYPE_BATCH,
            JOB_TYPE_SYSTEM,
            JOB_TYPE_SYSBATCH,
        ]
        .contains(&self.job_type.as_str())
        {
            errs.push(format!(
                "job type {:?} is not one of service, batch, system, sysbatch",
                self.job_type
            ));
        }
        if !(1..=100).contains(&self.priority) {
            errs.push(format!(
                "job priority must be between 1 and 100, got {}",
                self.priority
            ));
        }
        check_meta("job", &self.meta, &mut errs);
        check_placement("job", &self.affinities, &self.spreads, &mut errs);
        if let Some(u) = &self.update {
            u.check("job update", &mut errs);
        }
        if self.task_groups.is_empty() {
            errs.push("job has no task groups".to_string());
        }
        let mut seen = std::collections::BTreeSet::new();
        for g in &self.task_groups {
            if !seen.insert(g.name.as_str()) {
                errs.push(format!("task group {:?} is defined twice", g.name));
            }
            errs.extend(g.validate());
        }
        errs
    }

    /// The allocations the job asks for: the sum of its groups' counts (negative counts,
    /// refused by `validate`, count as 0). Saturates rather than overflows.
    pub fn total_count(&self) -> u64 {
        self.task_groups
            .iter()
            .map(|g| u64::try_from(g.count).unwrap_or(0))
            .fold(0u64, u64::saturating_add)
    }

    /// Checks the job against a server's `job_max_count` (0: no limit), Nomad's limit on
    /// the sum of a job's group counts.
    pub fn check_max_count(&self, job_max_count: u64) -> Result<(), String> {
        let total = self.total_count();
        if job_max_count > 0 && total > job_max_count {
            return Err(format!(
                "job {:?}: total count was greater than configured job_max_count: \
                 {total} > {job_max_count} (the sum of the groups' counts); lower the \
                 counts, or raise job_max_count in the agent's server block",
                self.id
            ));
        }
        Ok(())
    }
}

/// The longest job ID, group, task, volume or port name, in bytes (a task's name becomes
/// a directory and file names on the client).
pub const MAX_NAME_LEN: usize = 128;
/// The longest free text (job name, meta values...) a job may carry, in bytes.
pub const MAX_TEXT_LEN: usize = 64 * 1024;
/// The longest duration a job may give, in nanoseconds: 100 years, so that a time plus
/// a duration (or two) never overflows nanoseconds since 1970.
pub const MAX_DURATION: i64 = 100 * 365 * 24 * 3600 * 1_000_000_000;
/// The largest count-like number (group count, attempts, max_parallel, canary) and the
/// largest cpu (MHz), memory or disk (MB) a job may ask for.
pub const MAX_AMOUNT: i64 = i32::MAX as i64;
/// The most log files a task may keep, and the largest one, in MB.
pub const MAX_LOG_FILES: i64 = 100_000;
pub const MAX_LOG_FILE_MB: i64 = 1024 * 1024;
/// Nomad's default `job_max_count`: at most this many allocations per job.
pub const DEFAULT_JOB_MAX_COUNT: u64 = 50_000;

/// Why a job ID is refused (Nomad's rules: no space, no NUL; and a length bound).
pub fn job_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("job ID is missing".to_string())
    } else if id.contains(' ') {
        Some(format!("job ID {id:?} contains a space"))
    } else if id.contains('\0') {
        Some(format!("job ID {id:?} contains a null character"))
    } else if id.chars().any(char::is_control) {
        Some(format!(
            "job ID {id:?} contains a control character; use printable characters"
        ))
    } else if id.len() > MAX_NAME_LEN {
        Some(format!(
            "job ID is {} bytes long; the limit is {MAX_NAME_LEN}",
            id.len()
        ))
    } else {
        None
    }
}

/// Why a task group name is refused, if it is.
pub fn group_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a task group has no name".to_string());
    }
    path_name_problem(name).map(|m| format!("task group name {name:?} {m}"))
}

/// Why a task name is refused, if it is: Nomad refuses slashes (the name becomes the
/// task's directory on the client); Drover also refuses NUL, `.`, `..`, control
/// characters, overlong names and `alloc`, the allocation's shared directory.
pub fn task_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("a task has no name".to_string())
    } else if let Some(m) = path_name_problem(name) {
        Some(format!("task name {name:?} {m}"))
    } else if name == "alloc" {
        Some("task name \"alloc\" is reserved: it is the allocation's shared directory".into())
    } else {
        None
    }
}

/// Why a port label is refused, if it is: it becomes `NOMAD_PORT_<label>` and friends.
pub fn port_label_problem(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("a port has no label".to_string());
    }
    label_problem(label)
        .or_else(|| {
            (label.contains('=') || label.chars().any(char::is_whitespace))
                .then(|| "contains `=` or white space".to_string())
        })
        .map(|m| format!("port label {label:?} {m}"))
}

/// Why a name that becomes a path component on the client (a task, group or volume
/// name) is refused, if it is; the reason follows the name in a sentence.
pub fn path_name_problem(name: &str) -> Option<String> {
    if name.contains(['/', '\\']) {
        Some("cannot include slashes (/ or \\)".into())
    } else if name.contains('\0') {
        Some("cannot include null characters".into())
    } else if name == "." || name == ".." {
        Some("cannot be \".\" or \"..\"".into())
    } else if name.chars().any(char::is_control) {
        Some("cannot include control characters".into())
    } else if name.len() > MAX_NAME_LEN {
        Some(format!(
            "is {} bytes long; the limit is {MAX_NAME_LEN}",
            name.len()
        ))
    } else {
        None
    }
}

/// Why a short label (region, datacenter) is refused, if it is.
fn label_problem(s: &str) -> Option<String> {
    if s.contains('\0') {
        Some("contains a null character".into())
    } else if s.chars().any(char::is_control) {
        Some("contains a control character".into())
    } else if s.len() > MAX_NAME_LEN {
        Some(format!(
            "is {} bytes long; the limit is {MAX_NAME_LEN}",
            s.len()
        ))
    } else {
        None
    }
}

/// Nomad's namespace (`[a-zA-Z0-9-]{1,128}`) and node pool (also `_`) names.
fn is_identifier(s: &str, underscore: bool) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || (underscore && c == '_'))
}

/// Why an environment variable name (a task's `env` key) is refused, if it is.
fn env_key_problem(k: &str) -> Option<&'static str> {
    if k.is_empty() {
        Some("is empty")
    } else if k.contains('=') {
        Some("contains `=`")
    } else if k.contains('\0') {
        Some("contains a null character")
    } else {
        None
    }
}

/// `meta` keys become `NOMAD_META_<key>` variables: no empty keys, `=` or NUL; values
/// carry no NUL (an environment cannot hold one).
fn check_meta(at: &str, meta: &BTreeMap<String, String>, errs: &mut Vec<String>) {
    for (k, v) in meta {
        if let Some(m) = env_key_problem(k) {
            errs.push(format!("{at}: meta key {k:?} {m}"));
        } else if k.len() > MAX_NAME_LEN {
            errs.push(format!(
                "{at}: meta key {k:?} is {} bytes long; the limit is {MAX_NAME_LEN}",
                k.len()
            ));
        }
        check_text(at, &format!("meta {k:?}"), v, errs);
    }
}

/// Free text that reaches an environment or a command line: no NUL, bounded length.
fn check_text(at: &str, what: &str, v: &str, errs: &mut Vec<String>) {
    if v.contains('\0') {
        errs.push(format!("{at}: {what} contains a null character"));
    } else if v.len() > MAX_TEXT_LEN {
        errs.push(format!(
            "{at}: {what} is {} bytes long; the limit is {MAX_TEXT_LEN}",
            v.len()
        ));
    }
}

/// A count-like number in `0..=MAX_AMOUNT`.
fn check_amount(at: &str, what: &str, v: i64, errs: &mut Vec<String>) {
    if !(0..=MAX_AMOUNT).contains(&v) {
        errs.push(format!(
            "{at}: {what} {v} is out of range: it must be between 0 and {MAX_AMOUNT}"
        ));
    }
}

/// A duration in nanoseconds in `0..=MAX_DURATION`.
fn check_duration(at: &str, what: &str, ns: i64, errs: &mut Vec<String>) {
    if ns < 0 {
        errs.push(format!(
            "{at}: {what} is negative ({}); durations must be 0 or more",
            show_nanos(ns)
        ));
    } else if ns > MAX_DURATION {
        errs.push(format!(
            "{at}: {what} ({}) is longer than the limit of 876000h (100 years)",
            show_nanos(ns)
        ));
    }
}

/// Nanoseconds as a duration people read ("-5s", "500ms", "3600000h").
fn show_nanos(ns: i64) -> String {
    const S: i64 = 1_000_000_000;
    if ns % (3600 * S) == 0 {
        format!("{}h", ns / (3600 * S))
    } else if ns % S == 0 {
        format!("{}s", ns / S)
    } else if ns % 1_000_000 == 0 {
        format!("{}ms", ns / 1_000_000)
    } else {
        format!("{ns}ns")
    }
}

/// Affinity weights (-100..=100) and spreads (weight 0..=100, targets 0..=100% in all).
fn check_placement(at: &str, affinities: &[Affinity], spreads: &[Spread], errs: &mut Vec<String>) {
    for a in affinities {
        if !(-100..=100).contains(&a.weight) {
            errs.push(format!(
                "{at}: affinity weight {} is out of range: it must be between -100 and 100",
                a.weight
            ));
        }
    }
    for s in spreads {
        if !(0..=100).contains(&s.weight) {
            errs.push(format!(
                "{at}: spread weight {} is out of range: it must be between 0 and 100",
                s.weight
            ));
        }
        check_amount(at, "spread max_skew", s.max_skew, errs);
        let mut total: i64 = 0;
        for t in &s.spread_target {
            if !(0..=100).contains(&t.percent) {
                errs.push(format!(
                    "{at}: spread target {:?} percent {} is out of range: it must be between 0 and 100",
                    t.value, t.percent
                ));
            } else {
                total += t.percent;
            }
        }
        if total > 100 {
            errs.push(format!(
                "{at}: spread targets of {:?} add up to {total}%, more than 100%",
                s.attribute
            ));
        }
    }
}

/// Port labels and numbers of a group's or task's networks.
fn check_networks(at: &str, networks: &[NetworkResource], errs: &mut Vec<String>) {
    let mut seen = std::collections::BTreeSet::new();
    for n in networks {
        check_amount(at, "network mbits", n.mbits, errs);
        for (p, reserved) in n
            .reserved_ports
            .iter()
            .map(|p| (p, true))
            .chain(n.dynamic_ports.iter().map(|p| (p, false)))
        {
            if let Some(m) = port_label_problem(&p.label) {
                errs.push(format!("{at}: {m}"));
            } else if !seen.insert(p.label.as_str()) {
                errs.push(format!("{at}: port label {:?} is used twice", p.label));
            }
            if !(0..=65535).contains(&p.value) {
                let kind = if reserved { "static" } else { "dynamic" };
                errs.push(format!(
                    "{at}: {kind} port {:?} value {} is not between 0 and 65535",
                    p.label, p.value
                ));
            }
            if !(-1..=65535).contains(&p.to) {
                errs.push(format!(
                    "{at}: port {:?} `to` {} is not between -1 and 65535",
                    p.label, p.to
                ));
            }
        }
    }
}

impl UpdateStrategy {
    fn check(&self, at: &str, errs: &mut Vec<String>) {
        check_duration(at, "stagger", self.stagger, errs);
        check_duration(at, "min_healthy_time", self.min_healthy_time, errs);
        check_duration(at, "healthy_deadline", self.healthy_deadline, errs);
        check_duration(at, "progress_deadline", self.progress_deadline, errs);
        check_amount(at, "max_parallel", self.max_parallel, errs);
        check_amount(at, "canary", self.canary, errs);
    }
}

impl MigrateStrategy {
    fn check(&self, at: &str, errs: &mut Vec<String>) {
        check_duration(at, "min_healthy_time", self.min_healthy_time, errs);
        check_duration(at, "healthy_deadline", self.healthy_deadline, errs);
        check_amount(at, "max_parallel", self.max_parallel, errs);
    }
}

impl RestartPolicy {
    fn check(&self, at: &str, errs: &mut Vec<String>) {
        check_amount(at, "attempts", self.attempts, errs);
        check_duration(at, "interval", self.interval, errs);
        check_duration(at, "delay", self.delay, errs);
    }
}

impl ReschedulePolicy {
    fn check(&self, at: &str, errs: &mut Vec<String>) {
        check_amount(at, "attempts", self.attempts, errs);
        check_duration(at, "interval", self.interval, errs);
        check_duration(at, "delay", self.delay, errs);
        check_duration(at, "max_delay", self.max_delay, errs);
    }
}

impl TaskGroup {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let at = format!("task group {:?}", self.name);
        errs.extend(group_name_problem(&self.name));
        if self.count < 0 {
            errs.push(format!("{at}: count must be >= 0, got {}", self.count));
        } else if self.count > MAX_AMOUNT {
            errs.push(format!(
                "{at}: count {} is out of range: it must be between 0 and {MAX_AMOUNT}",
                self.count
            ));
        }
        check_meta(&at, &self.meta, &mut errs);
        check_placement(&at, &self.affinities, &self.spreads, &mut errs);
        if let Some(r) = &self.restart_policy {
            r.check(&format!("{at}: restart"), &mut errs);
        }
        if let Some(r) = &self.reschedule_policy {
            r.check(&format!("{at}: reschedule"), &mut errs);
        }
        if let Some(u) = &self.update {
            u.check(&format!("{at}: update"), &mut errs);
        }
        if let Some(m) = &self.migrate {
            m.check(&format!("{at}: migrate"), &mut errs);
        }
        if let Some(d) = &self.ephemeral_disk {
            check_amount(&at, "ephemeral_disk size", d.size_mb, &mut errs);
        }
        for (what, d) in [
            ("shutdown_delay", self.shutdown_delay),
            (
                "stop_after_client_disconnect",
                self.stop_after_client_disconnect,
            ),
            ("max_client_disconnect", self.max_client_disconnect),
        ] {
            if let Some(ns) = d {
                check_duration(&at, what, ns, &mut errs);
            }
        }
        check_networks(&at, &self.networks, &mut errs);
        check_services(&at, &self.services, &mut errs);
        check_group_services(&at, self, &mut errs);
        for (key, v) in &self.volumes {
            for name in [key, &v.name] {
                if name.is_empty() {
                    continue;
                }
                if let Some(m) = path_name_problem(name) {
                    errs.push(format!("{at}: volume name {name:?} {m}"));
                }
            }
        }
        if self.tasks.is_empty() {
            errs.push(format!("{at}: no tasks"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.tasks {
            if !seen.insert(t.name.as_str()) {
                errs.push(format!("{at}: task {:?} is defined twice", t.name));
            }
            errs.extend(t.validate().into_iter().map(|e| format!("{at}: {e}")));
        }
        errs
    }
}

impl Task {
    pub fn validate(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let at = format!("task {:?}", self.name);
        errs.extend(task_name_problem(&self.name));
        if self.driver.is_empty() {
            errs.push(format!("{at}: missing driver"));
        }
        if let Some(r) = &self.resources {
            if r.cpu < 1 && r.cores < 1 {
                errs.push(format!("{at}: cpu must be at least 1 MHz, got {}", r.cpu));
            }
            if r.memory_mb < 10 {
                errs.push(format!(
                    "{at}: memory must be at least 10 MB, got {}",
                    r.memory_mb
                ));
            }
            if r.cpu > MAX_AMOUNT || (r.cpu < 0 && r.cores >= 1) {
                check_amount(&at, "cpu", r.cpu, &mut errs);
            }
            if r.memory_mb > MAX_AMOUNT {
                check_amount(&at, "memory", r.memory_mb, &mut errs);
            }
            check_amount(&at, "cores", r.cores, &mut errs);
            // -1 is Nomad's "no memory limit" (oversubscription).
            if r.memory_max_mb != -1 {
                check_amount(&at, "memory_max", r.memory_max_mb, &mut errs);
            }
            check_amount(&at, "disk", r.disk_mb, &mut errs);
            check_networks(&at, &r.networks, &mut errs);
        }
        if self.kill_timeout < 0 {
            errs.push(format!("{at}: kill_timeout must not be negative"));
        } else {
            check_duration(&at, "kill_timeout", self.kill_timeout, &mut errs);
        }
        check_text(&at, "user", &self.user, &mut errs);
        check_text(&at, "kill_signal", &self.kill_signal, &mut errs);
        for (k, v) in &self.env {
            if let Some(m) = env_key_problem(k) {
                errs.push(format!("{at}: env key {k:?} {m}"));
            }
            check_text(&at, &format!("env {k:?}"), v, &mut errs);
        }
        check_meta(&at, &self.meta, &mut errs);
        check_placement(&at, &self.affinities, &[], &mut errs);
        if let Some(r) = &self.restart_policy {
            r.check(&format!("{at}: restart"), &mut errs);
        }
        if let Some(l) = &self.log_config {
            if !(1..=MAX_LOG_FILES).contains(&l.max_files) {
                errs.push(format!(
                    "{at}: logs max_files {} is out of range: it must be between 1 and {MAX_LOG_FILES}",
                    l.max_files
                ));
            }
            if !(1..=MAX_LOG_FILE_MB).contains(&l.max_file_size_mb) {
                errs.push(format!(
                    "{at}: logs max_file_size {} MB is out of range: it must be between 1 and {MAX_LOG_FILE_MB}",
                    l.max_file_size_mb
                ));
            }
        }
        for a in &self.artifacts {
            check_text(&at, "artifact destination", &a.relative_dest, &mut errs);
            check_text(&at, "artifact source", &a.getter_source, &mut errs);
        }
        template_problems(&at, &self.templates, &mut errs);
        check_services(&at, &self.services, &mut errs);
        for s in &self.services {
            if !s.task_name.is_empty() && s.task_name != self.name {
                errs.push(format!(
                    "{at}: service {:?} names task {:?}: only a group's services can be \
                     assigned a task",
                    s.name, s.task_name
                ));
            }
            for c in &s.checks {
                if !c.task_name.is_empty() && c.task_name != self.name {
                    errs.push(format!(
                        "{at}: service {:?} check {:?} is invalid: only task group service \
                         checks can be assigned tasks",
                        s.name, c.name
                    ));
                }
            }
        }
        if let Some(ns) = self.shutdown_delay {
            check_duration(&at, "shutdown_delay", ns, &mut errs);
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid, canonicalized job with one group `g` of one task `t`.
    fn job() -> Job {
        let mut j = Job {
            id: "web".into(),
            task_groups: vec![TaskGroup {
                name: "g".into(),
                count: 1,
                tasks: vec![Task {
                    name: "t".into(),
                    driver: "raw_exec".into(),
                    ..Task::default()
                }],
                ..TaskGroup::default()
            }],
            ..Job::default()
        };
        j.canonicalize();
        assert_eq!(j.validate(), Vec::<String>::new());
        j
    }

    fn errors_of(f: impl FnOnce(&mut Job)) -> String {
        let mut j = job();
        f(&mut j);
        j.validate().join("\n")
    }

    #[test]
    fn task_names_that_would_leave_the_alloc_dir_are_refused() {
        for (name, says) in [
            ("/x", "cannot include slashes"),
            ("../../../../x", "cannot include slashes"),
            ("a\\b", "cannot include slashes"),
            ("x\0y", "cannot include null characters"),
            (".", "cannot be \".\" or \"..\""),
            ("..", "cannot be \".\" or \"..\""),
            ("tab\there", "cannot include control characters"),
            ("alloc", "is reserved"),
        ] {
            let e = errors_of(|j| j.task_groups[0].tasks[0].name = name.into());
            assert!(
                e.contains(&format!("task name {name:?} {says}")) || e.contains(says),
                "{name:?}: {e}"
            );
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        let e = errors_of(|j| j.task_groups[0].tasks[0].name = long.clone());
        assert!(e.contains("bytes long; the limit is 128"), "{e}");
        assert!(task_name_problem("web-1.api_2").is_none());
    }

    #[test]
    fn group_names_and_job_ids_follow_nomads_rules() {
        let e = errors_of(|j| j.task_groups[0].name = "a/b".into());
        assert!(
            e.contains("task group name \"a/b\" cannot include slashes"),
            "{e}"
        );
        assert!(errors_of(|j| j.id = "a b".into()).contains("job ID \"a b\" contains a space"));
        assert!(errors_of(|j| j.id = "a\0b".into()).contains("contains a null character"));
        assert!(errors_of(|j| j.id = "x".repeat(129)).contains("the limit is 128"));
        // Dispatched and periodic children have a slash in their IDs, as in Nomad.
        assert_eq!(errors_of(|j| j.id = "parent/dispatch-1".into()), "");
        assert!(errors_of(|j| j.namespace = "../x".into()).contains("not a valid namespace name"));
        assert!(errors_of(|j| j.node_pool = "a b".into()).contains("not a valid node pool name"));
        assert!(errors_of(|j| j.datacenters = vec![String::new()]).contains("empty string"));
    }

    #[test]
    fn names_that_become_environment_variables_or_paths_are_checked() {
        let e = errors_of(|j| {
            j.meta.insert("a=b".into(), "v".into());
        });
        assert!(e.contains("job: meta key \"a=b\" contains `=`"), "{e}");
        let e = errors_of(|j| {
            j.task_groups[0].tasks[0]
                .env
                .insert("K".into(), "v\0".into());
        });
        assert!(e.contains("env \"K\" contains a null character"), "{e}");
        let e = errors_of(|j| {
            j.task_groups[0].volumes.insert(
                "../data".into(),
                VolumeRequest {
                    name: "../data".into(),
                    ..VolumeRequest::default()
                },
            );
        });
        assert!(
            e.contains("volume name \"../data\" cannot include slashes"),
            "{e}"
        );
        let e = errors_of(|j| {
            j.task_groups[0].networks = vec![NetworkResource {
                dynamic_ports: vec![
                    Port {
                        label: "a b".into(),
                        ..Port::default()
                    },
                    Port {
                        label: "http".into(),
                        ..Port::default()
                    },
                    Port {
                        label: "http".into(),
                        ..Port::default()
                    },
                ],
                ..NetworkResource::default()
            }];
        });
        assert!(
            e.contains("port label \"a b\" contains `=` or white space"),
            "{e}"
        );
        assert!(e.contains("port label \"http\" is used twice"), "{e}");
    }

    // Long on purpose: one bad value per range check, so a check that goes missing fails here.
    #[test]
    fn every_count_and_duration_is_range_checked() {
        let e = errors_of(|j| j.task_groups[0].count = i64::MAX);
        assert!(
            e.contains("count 9223372036854775807 is out of range"),
            "{e}"
        );
        let e = errors_of(|j| j.task_groups[0].tasks[0].kill_timeout = i64::MAX);
        assert!(
            e.contains("kill_timeout (9223372036854775807ns) is longer than the limit"),
            "{e}"
        );
        let e = errors_of(|j| {
            let r = j.task_groups[0].restart_policy.as_mut().unwrap();
            r.delay = -1_000_000_000;
            r.attempts = -1;
        });
        assert!(e.contains("restart: delay is negative (-1s)"), "{e}");
        assert!(e.contains("restart: attempts -1 is out of range"), "{e}");
        let e = errors_of(|j| {
            j.task_groups[0]
                .reschedule_policy
                .as_mut()
                .unwrap()
                .max_delay = -1
        });
        assert!(e.contains("reschedule: max_delay is negative"), "{e}");
        let e = errors_of(|j| {
            j.update = Some(UpdateStrategy {
                max_parallel: -3,
                ..UpdateStrategy::default()
            })
        });
        assert!(
            e.contains("job update: max_parallel -3 is out of range"),
            "{e}"
        );
        let e = errors_of(|j| {
            j.task_groups[0].migrate = Some(MigrateStrategy {
                healthy_deadline: MAX_DURATION + 1,
                ..MigrateStrategy::default()
            })
        });
        assert!(e.contains("migrate: healthy_deadline"), "{e}");
        let e = errors_of(|j| j.task_groups[0].shutdown_delay = Some(-5));
        assert!(e.contains("shutdown_delay is negative"), "{e}");
        let e = errors_of(|j| {
            let r = j.task_groups[0].tasks[0].resources.as_mut().unwrap();
            r.cpu = i64::MAX;
            r.memory_mb = i64::MAX;
            r.disk_mb = -1;
        });
        assert!(e.contains("cpu 9223372036854775807 is out of range"), "{e}");
        assert!(
            e.contains("memory 9223372036854775807 is out of range"),
            "{e}"
        );
        assert!(e.contains("disk -1 is out of range"), "{e}");
        let e = errors_of(|j| {
            j.task_groups[0].networks = vec![NetworkResource {
                reserved_ports: vec![Port {
                    label: "http".into(),
                    value: 65536,
                    ..Port::default()
                }],
                ..NetworkResource::default()
            }];
        });
        assert!(
            e.contains("static port \"http\" value 65536 is not between 0 and 65535"),
            "{e}"
        );
        let e = errors_of(|j| {
            j.task_groups[0].tasks[0]
                .log_config
                .as_mut()
                .unwrap()
                .max_files = 0
        });
        assert!(e.contains("logs max_files 0 is out of range"), "{e}");
        let e = errors_of(|j| {
            j.spreads = vec![Spread {
                attribute: "${node.datacenter}".into(),
                weight: 500,
                spread_target: vec![
                    SpreadTarget {
                        value: "a".into(),
                        percent: 70,
                    },
                    SpreadTarget {
                        value: "b".into(),
                        percent: 70,
                    },
                ],
                max_skew: 0,
            }]
        });
        assert!(e.contains("spread weight 500 is out of range"), "{e}");
        assert!(e.contains("add up to 140%"), "{e}");
        // memory_max -1 is Nomad's "no limit".
        let e = errors_of(|j| {
            j.task_groups[0].tasks[0]
                .resources
                .as_mut()
                .unwrap()
                .memory_max_mb = -1
        });
        assert_eq!(e, "");
    }

    #[test]
    fn job_max_count_limits_the_sum_of_group_counts_without_overflow() {
        let mut j = job();
        let mut second = j.task_groups[0].clone();
        second.name = "h".into();
        j.task_groups.push(second);
        j.task_groups[0].count = 6;
        j.task_groups[1].count = 6;
        assert_eq!(j.total_count(), 12);
        let e = j.check_max_count(10).unwrap_err();
        assert!(
            e.contains("total count was greater than configured job_max_count: 12 > 10"),
            "{e}"
        );
        assert!(j.check_max_count(12).is_ok());
        assert!(j.check_max_count(0).is_ok(), "0 means no limit");
        let mut third = j.task_groups[0].clone();
        third.name = "i".into();
        j.task_groups.push(third);
        for g in &mut j.task_groups {
            g.count = i64::MAX;
        }
        assert_eq!(j.total_count(), u64::MAX, "saturates, never wraps");
        assert!(j.check_max_count(DEFAULT_JOB_MAX_COUNT).is_err());
    }

    /// The job of `job()` with a group network port "http" and one nomad service using
    /// it, with one http check; `f` changes the job before it is canonicalized.
    fn service_errors(f: impl FnOnce(&mut Job)) -> String {
        let mut j = job();
        j.task_groups[0].networks = vec![NetworkResource {
            dynamic_ports: vec![Port {
                label: "http".into(),
                ..Port::default()
            }],
            ..NetworkResource::default()
        }];
        j.task_groups[0].services = vec![Service {
            name: "api".into(),
            port_label: "http".into(),
            provider: "nomad".into(),
            checks: vec![ServiceCheck {
                check_type: "http".into(),
                path: "/health".into(),
                interval: crate::secs(10),
                timeout: crate::secs(2),
                ..ServiceCheck::default()
            }],
            ..Service::default()
        }];
        f(&mut j);
        j.canonicalize();
        j.validate().join("\n")
    }

    fn check(j: &mut Job) -> &mut ServiceCheck {
        &mut j.task_groups[0].services[0].checks[0]
    }

    #[test]
    fn a_valid_nomad_service_passes_and_gets_its_defaults() {
        assert_eq!(service_errors(|_| {}), "");
        let mut j = job();
        j.task_groups[0].tasks[0].services = vec![Service::default()];
        j.canonicalize();
        let s = &j.task_groups[0].tasks[0].services[0];
        assert_eq!((s.name.as_str(), s.task_name.as_str()), ("web-g-t", "t"));
        assert_eq!(j.validate(), Vec::<String>::new());
    }

    #[test]
    fn nomad_services_run_only_http_and_tcp_checks() {
        for ty in ["grpc", "script", "docker"] {
            let e = service_errors(|j| check(j).check_type = ty.into());
            assert!(
                e.contains(&format!(
                    "service \"api\" check \"service: \\\"api\\\" check\": invalid check type \
                     ({ty:?}), must be one of http, tcp"
                )),
                "{ty}: {e}"
            );
        }
        let e = service_errors(|j| {
            j.task_groups[0].services[0].provider = "consul".into();
            let c = check(j);
            c.check_type = "script".into();
            c.command = "/bin/true".into();
        });
        assert_eq!(e, "", "consul services may declare script checks");
        let e = service_errors(|j| {
            j.task_groups[0].services[0].provider = "consul".into();
            check(j).check_type = "script".into();
        });
        assert!(
            e.contains("script type must have a valid script path"),
            "{e}"
        );
    }

    #[test]
    fn checks_need_an_interval_and_timeout_of_at_least_a_second() {
        let e = service_errors(|j| check(j).interval = 0);
        assert!(
            e.contains("missing required value interval. Interval cannot be less than 1s"),
            "{e}"
        );
        let e = service_errors(|j| check(j).interval = 500_000_000);
        assert!(
            e.contains("interval (500ms) cannot be lower than 1s"),
            "{e}"
        );
        let e = service_errors(|j| check(j).timeout = 0);
        assert!(
            e.contains("missing required value timeout. Timeout cannot be less than 1s"),
            "{e}"
        );
        let e = service_errors(|j| check(j).timeout = 1);
        assert!(
            e.contains("timeout (1ns) is lower than required minimum timeout 1s"),
            "{e}"
        );
    }

    #[test]
    fn http_checks_need_a_relative_path_and_a_known_method() {
        let e = service_errors(|j| check(j).path = String::new());
        assert!(e.contains("http type must have http path"), "{e}");
        let e = service_errors(|j| check(j).path = "http://x/health".into());
        assert!(e.contains("http type must have relative http path"), "{e}");
        let e = service_errors(|j| check(j).method = "FETCH".into());
        assert!(
            e.contains("method type \"FETCH\" not supported in Nomad http check"),
            "{e}"
        );
        let e = service_errors(|j| check(j).protocol = "ftp".into());
        assert!(e.contains("invalid protocol \"ftp\""), "{e}");
    }

    #[test]
    fn port_labels_must_exist_in_the_groups_network_or_be_numbers() {
        let e = service_errors(|j| j.task_groups[0].services[0].port_label = "web".into());
        assert!(
            e.contains("port label \"web\" referenced by services api does not exist"),
            "{e}"
        );
        assert_eq!(
            service_errors(|j| j.task_groups[0].services[0].port_label = "8080".into()),
            ""
        );
        let e = service_errors(|j| check(j).port_label = "admin".into());
        assert!(
            e.contains("port label \"admin\" referenced by service \"api\" check"),
            "{e}"
        );
        let e = service_errors(|j| j.task_groups[0].services[0].port_label = String::new());
        assert!(
            e.contains("check requires a port but neither check nor service \"api\" have a port"),
            "{e}"
        );
    }

    #[test]
    fn address_modes_and_on_update_take_nomads_values() {
        let e = service_errors(|j| j.task_groups[0].services[0].address_mode = "best".into());
        assert!(
            e.contains("Service address_mode must be \"auto\", \"host\""),
            "{e}"
        );
        assert!(e.contains("not \"best\""), "{e}");
        let e = service_errors(|j| {
            let s = &mut j.task_groups[0].services[0];
            s.address = "10.0.0.1".into();
            s.address_mode = "host".into();
        });
        assert!(
            e.contains("Service address_mode must be \"auto\" if address is set"),
            "{e}"
        );
        let e = service_errors(|j| j.task_groups[0].services[0].address_mode = "driver".into());
        assert!(
            e.contains("cannot use address_mode=\"driver\", only services defined in a \"task\""),
            "{e}"
        );
        let e = service_errors(|j| check(j).address_mode = "auto".into());
        assert!(
            e.contains("invalid address_mode \"auto\" - auto only valid for services"),
            "{e}"
        );
        let e = service_errors(|j| j.task_groups[0].services[0].on_update = "never".into());
        assert!(
            e.contains("Service on_update must be \"require_healthy\", \"ignore_warnings\", or \"ignore\"; not \"never\""),
            "{e}"
        );
        let e = service_errors(|j| check(j).on_update = "ignore_warnings".into());
        assert!(
            e.contains("on_update may only be set to ignore_warnings for Consul service checks"),
            "{e}"
        );
        let e = service_errors(|j| j.task_groups[0].services[0].provider = "etcd".into());
        assert!(
            e.contains("Service provider must be \"consul\", or \"nomad\"; not \"etcd\""),
            "{e}"
        );
    }

    #[test]
    fn service_names_follow_rfc_1123_except_interpolations() {
        for bad in ["my_api", "-api", "api-", &"a".repeat(64)] {
            let e = service_errors(|j| j.task_groups[0].services[0].name = bad.into());
            assert!(
                e.contains("Service name must be valid per RFC 1123 and can contain only alphanumeric characters or dashes and must be no longer than 63 characters"),
                "{bad}: {e}"
            );
        }
        for good in [
            "a",
            "api-v2",
            "${NOMAD_JOB_NAME}-api",
            "${JOB}-${TASKGROUP}",
        ] {
            let e = service_errors(|j| j.task_groups[0].services[0].name = good.into());
            assert_eq!(e, "", "{good}");
        }
        // The default name comes from the job and group names, and is checked too.
        let e = service_errors(|j| {
            j.task_groups[0].name = "my_group".into();
            j.task_groups[0].services[0].name = String::new();
        });
        assert!(e.contains("\"web-my_group\""), "{e}");
    }

    #[test]
    fn a_group_uses_one_provider_and_each_service_name_once_per_port() {
        let e = service_errors(|j| {
            j.task_groups[0].tasks[0].services = vec![Service {
                name: "metrics".into(),
                ..Service::default()
            }];
        });
        assert!(
            e.contains(
                "Multiple service providers used: task group services must use the same provider"
            ),
            "{e}"
        );
        let e = service_errors(|j| {
            let s = j.task_groups[0].services[0].clone();
            j.task_groups[0].tasks[0].services = vec![s];
        });
        assert!(e.contains("Service \"api\" is duplicate"), "{e}");
        let e = service_errors(|j| {
            let mut s = j.task_groups[0].services[0].clone();
            s.port_label = "9090".into();
            j.task_groups[0].services.push(s);
        });
        assert_eq!(e, "", "one name on two ports is two services");
        let e = service_errors(|j| {
            let c = check(j).clone();
            j.task_groups[0].services[0].checks.push(c);
        });
        assert!(
            e.contains("is duplicate: give each check of a service its own name"),
            "{e}"
        );
    }

    #[test]
    fn check_restart_is_checked_and_inherited_from_the_service() {
        let e = service_errors(|j| {
            j.task_groups[0].services[0].check_restart = Some(CheckRestart {
                limit: -1,
                grace: -1_000_000_000,
                ignore_warnings: false,
            })
        });
        assert!(
            e.contains("check_restart limit must be greater than or equal to 0 but found -1"),
            "{e}"
        );
        assert!(
            e.contains("check_restart grace must be greater than or equal to 0 but found -1s"),
            "{e}"
        );
        let e = service_errors(|j| {
            let c = check(j);
            c.on_update = "ignore".into();
            c.check_restart = Some(CheckRestart::new());
        });
        assert!(
            e.contains("on_update value \"ignore\" is not compatible with check_restart"),
            "{e}"
        );
        let e = service_errors(|j| {
            check(j).check_restart = Some(CheckRestart {
                ignore_warnings: true,
                ..CheckRestart::new()
            })
        });
        assert!(
            e.contains("ignore_warnings on check_restart only supported for Consul service checks"),
            "{e}"
        );
    }

    #[test]
    fn consul_only_check_settings_are_refused_for_nomad_services() {
        for (set, field) in [
            (
                (|c: &mut ServiceCheck| c.success_before_passing = 2) as fn(&mut ServiceCheck),
                "success_before_passing",
            ),
            (
                |c| c.failures_before_critical = 2,
                "failures_before_critical",
            ),
            (|c| c.failures_before_warning = 2, "failures_before_warning"),
            (|c| c.tls_server_name = "x".into(), "tls_server_name"),
            (|c| c.expose = true, "expose"),
            (
                |c| c.address_mode = "driver".into(),
                "address_mode = driver",
            ),
        ] {
            let e = service_errors(|j| set(check(j)));
            assert!(
                e.contains(&format!(
                    "{field} may only be set for Consul service checks"
                )),
                "{field}: {e}"
            );
        }
        let e = service_errors(|j| {
            j.task_groups[0].services[0].provider = "consul".into();
            check(j).success_before_passing = -1;
        });
        assert!(
            e.contains("success_before_passing must be non-negative"),
            "{e}"
        );
    }

    #[test]
    fn connect_and_unknown_tasks_are_refused() {
        let e = service_errors(|j| {
            j.task_groups[0].services[0].connect = Some(serde_json::json!({"Native": true}))
        });
        assert!(
            e.contains("Service with provider nomad cannot include Connect blocks"),
            "{e}"
        );
        let e = service_errors(|j| j.task_groups[0].services[0].task_name = "nope".into());
        assert!(
            e.contains("service \"api\" refers to task \"nope\", which is not in the group"),
            "{e}"
        );
        let e = service_errors(|j| {
            j.task_groups[0].tasks[0].services = vec![Service {
                name: "metrics".into(),
                provider: "nomad".into(),
                checks: vec![ServiceCheck {
                    task_name: "other".into(),
                    ..check(j).clone()
                }],
                port_label: "http".into(),
                ..Service::default()
            }];
        });
        assert!(
            e.contains("is invalid: only task group service checks can be assigned tasks"),
            "{e}"
        );
        let e = errors_of(|j| j.task_groups[0].tasks[0].shutdown_delay = Some(-1));
        assert!(e.contains("shutdown_delay is negative"), "{e}");
    }
}
