//! Lowering of the small blocks shared by jobs, groups and tasks: constraint, affinity,
//! spread, restart, reschedule, update, migrate, ephemeral_disk, network, resources,
//! lifecycle and logs.

use crate::reader::Reader;
use crate::schema::{self, Schema, OPERATORS};
use api::{
    Affinity, Constraint, EphemeralDisk, Lifecycle, LogConfig, MigrateStrategy, NetworkResource,
    Port, ReschedulePolicy, Resources, RestartPolicy, Spread, SpreadTarget, UpdateStrategy,
};
use hcl_edit::structure::{Attribute, Block};
use hcl_edit::Span;
use std::collections::BTreeMap;

/// What Nomad fills in for an `update` block's missing fields.
pub fn default_update() -> UpdateStrategy {
    UpdateStrategy {
        stagger: api::secs(30),
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time: api::secs(10),
        healthy_deadline: api::secs(300),
        progress_deadline: api::secs(600),
        auto_revert: false,
        auto_promote: false,
        canary: 0,
    }
}

/// What Nomad fills in for a `migrate` block's missing fields.
pub fn default_migrate() -> MigrateStrategy {
    MigrateStrategy {
        max_parallel: 1,
        health_check: "checks".into(),
        min_healthy_time: api::secs(10),
        healthy_deadline: api::secs(300),
    }
}

/// Where a block sits, for messages: `job "web" > group "api" > restart`.
pub fn child(path: &str, b: &Block) -> String {
    match b.labels.first() {
        Some(l) => format!("{path} > {} {:?}", b.ident.as_str(), l.as_str()),
        None => format!("{path} > {}", b.ident.as_str()),
    }
}

impl Reader<'_> {
    /// Opens block `b` at `path`, which takes no label: its own path, and its attributes
    /// and blocks checked against `schema`.
    pub(crate) fn unlabelled<'b>(
        &mut self,
        b: &'b Block,
        path: &str,
        schema: &Schema,
    ) -> (String, Vec<&'b Attribute>, Vec<&'b Block>) {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, blocks) = self.items(&b.body, &path, schema);
        (path, attrs, blocks)
    }

    pub fn constraint(&mut self, b: &Block, path: &str) -> Option<Constraint> {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::CONSTRAINT);
        let mut c = Constraint {
            operand: "=".into(),
            ..Constraint::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "attribute" => set(&mut c.l_target, self.string(a, &path)),
                "value" => set(&mut c.r_target, self.string(a, &path)),
                "operator" => set(&mut c.operand, self.one_of(a, &path, OPERATORS)),
                "distinct_hosts" => {
                    let distinct = self.bool(a, &path) == Some(true);
                    if distinct {
                        c.operand = "distinct_hosts".into();
                        c.r_target = "true".into();
                    }
                }
                "distinct_property" => {
                    c.operand = "distinct_property".into();
                    set(&mut c.l_target, self.string(a, &path));
                }
                op @ ("version" | "semver" | "regexp" | "set_contains" | "set_contains_any"
                | "set_contains_all") => {
                    c.operand = op.into();
                    set(&mut c.r_target, self.string(a, &path));
                }
                _ => {}
            }
        }
        Some(c)
    }

    pub fn affinity(&mut self, b: &Block, path: &str) -> Option<Affinity> {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::AFFINITY);
        let mut aff = Affinity {
            operand: "=".into(),
            weight: 50,
            ..Affinity::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "attribute" => set(&mut aff.l_target, self.string(a, &path)),
                "value" => set(&mut aff.r_target, self.string(a, &path)),
                "operator" => set(&mut aff.operand, self.one_of(a, &path, OPERATORS)),
                "weight" => {
                    set(&mut aff.weight, self.int(a, &path));
                    if !(-100..=100).contains(&aff.weight) || aff.weight == 0 {
                        self.error(
                            a.value.span(),
                            &path,
                            format!(
                                "affinity weight must be between -100 and 100 and not 0, got {}",
                                aff.weight
                            ),
                        );
                    }
                }
                op => {
                    aff.operand = op.into();
                    set(&mut aff.r_target, self.string(a, &path));
                }
            }
        }
        Some(aff)
    }

    pub fn spread(&mut self, b: &Block, path: &str) -> Option<Spread> {
        let (path, attrs, blocks) = self.unlabelled(b, path, &schema::SPREAD);
        let mut s = Spread {
            weight: 50,
            ..Spread::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "attribute" => set(&mut s.attribute, self.string(a, &path)),
                "weight" => set(&mut s.weight, self.int_in(a, &path, 0..=100)),
                // Drover's extension: a hard limit on how far the busiest value may run
                // ahead of the least busy one (0, the default, leaves the spread soft).
                "max_skew" => {
                    set(&mut s.max_skew, self.int_max(a, &path, api::MAX_AMOUNT));
                    if s.max_skew < 0 {
                        self.error(
                            a.value.span(),
                            &path,
                            format!(
                                "spread max_skew must be 0 (no hard limit) or more, got {}",
                                s.max_skew
                            ),
                        );
                    }
                }
                _ => {}
            }
        }
        for t in blocks {
            let Some(label) = self.label(t, &path) else {
                continue;
            };
            let tpath = child(&path, t);
            let (attrs, _) = self.items(&t.body, &tpath, &schema::SPREAD_TARGET);
            let mut target = SpreadTarget {
                value: label,
                percent: 0,
            };
            for a in attrs {
                match a.key.as_str() {
                    "value" => set(&mut target.value, self.string(a, &tpath)),
                    "percent" => set(&mut target.percent, self.int_in(a, &tpath, 0..=100)),
                    _ => {}
                }
            }
            s.spread_target.push(target);
        }
        if s.attribute.is_empty() {
            self.error(b.ident.span(), &path, "spread needs an `attribute`");
        }
        Some(s)
    }

    /// A `restart` block over `base` (the group's policy, or the job type's default).
    pub fn restart(&mut self, b: &Block, path: &str, base: RestartPolicy) -> RestartPolicy {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::RESTART);
        let mut r = base;
        for a in attrs {
            match a.key.as_str() {
                "attempts" => set(&mut r.attempts, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                "interval" => set(&mut r.interval, self.duration(a, &path)),
                "delay" => set(&mut r.delay, self.duration(a, &path)),
                "mode" => set(&mut r.mode, self.one_of(a, &path, schema::RESTART_MODES)),
                "render_templates" => set(&mut r.render_templates, self.bool(a, &path)),
                _ => {}
            }
        }
        r
    }

    pub fn reschedule(
        &mut self,
        b: &Block,
        path: &str,
        base: ReschedulePolicy,
    ) -> ReschedulePolicy {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::RESCHEDULE);
        let mut r = base;
        for a in attrs {
            match a.key.as_str() {
                "attempts" => set(&mut r.attempts, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                "interval" => set(&mut r.interval, self.duration(a, &path)),
                "delay" => set(&mut r.delay, self.duration(a, &path)),
                "delay_function" => set(
                    &mut r.delay_function,
                    self.one_of(a, &path, schema::DELAY_FUNCTIONS),
                ),
                "max_delay" => set(&mut r.max_delay, self.duration(a, &path)),
                "unlimited" => set(&mut r.unlimited, self.bool(a, &path)),
                _ => {}
            }
        }
        r
    }

    pub fn ephemeral_disk(&mut self, b: &Block, path: &str) -> EphemeralDisk {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::EPHEMERAL_DISK);
        let mut d = EphemeralDisk::default();
        for a in attrs {
            match a.key.as_str() {
                "sticky" => set(&mut d.sticky, self.bool(a, &path)),
                "migrate" => set(&mut d.migrate, self.bool(a, &path)),
                "size" => set(&mut d.size_mb, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                _ => {}
            }
        }
        d
    }

    pub fn update(&mut self, b: &Block, path: &str, base: UpdateStrategy) -> UpdateStrategy {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::UPDATE);
        let mut u = base;
        for a in attrs {
            match a.key.as_str() {
                "stagger" => set(&mut u.stagger, self.duration(a, &path)),
                "max_parallel" => set(
                    &mut u.max_parallel,
                    self.int_in(a, &path, 0..=api::MAX_AMOUNT),
                ),
                "health_check" => set(
                    &mut u.health_check,
                    self.one_of(a, &path, &["checks", "task_states", "manual"]),
                ),
                "min_healthy_time" => set(&mut u.min_healthy_time, self.duration(a, &path)),
                "healthy_deadline" => set(&mut u.healthy_deadline, self.duration(a, &path)),
                "progress_deadline" => set(&mut u.progress_deadline, self.duration(a, &path)),
                "auto_revert" => set(&mut u.auto_revert, self.bool(a, &path)),
                "auto_promote" => set(&mut u.auto_promote, self.bool(a, &path)),
                "canary" => set(&mut u.canary, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                _ => {}
            }
        }
        u
    }

    pub fn migrate(&mut self, b: &Block, path: &str, base: MigrateStrategy) -> MigrateStrategy {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::MIGRATE);
        let mut m = base;
        for a in attrs {
            match a.key.as_str() {
                "max_parallel" => set(
                    &mut m.max_parallel,
                    self.int_in(a, &path, 0..=api::MAX_AMOUNT),
                ),
                "health_check" => set(
                    &mut m.health_check,
                    self.one_of(a, &path, &["checks", "task_states"]),
                ),
                "min_healthy_time" => set(&mut m.min_healthy_time, self.duration(a, &path)),
                "healthy_deadline" => set(&mut m.healthy_deadline, self.duration(a, &path)),
                _ => {}
            }
        }
        m
    }

    /// A group's `network` block; `seen_ports` catches a port label used twice in a group.
    pub fn network(
        &mut self,
        b: &Block,
        path: &str,
        seen_ports: &mut BTreeMap<String, usize>,
    ) -> NetworkResource {
        let (path, attrs, blocks) = self.unlabelled(b, path, &schema::NETWORK);
        let mut n = NetworkResource::default();
        for a in attrs {
            match a.key.as_str() {
                "mode" => set(&mut n.mode, self.string(a, &path)),
                "mbits" => set(&mut n.mbits, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                _ => {}
            }
        }
        for p in blocks {
            let Some(label) = self.label(p, &path) else {
                continue;
            };
            if let Some(m) = api::port_label_problem(&label) {
                self.error(p.labels[0].span(), &path, m);
            }
            if let Some(first) = seen_ports.get(&label) {
                let first = *first;
                self.error(
                    p.labels[0].span(),
                    &path,
                    format!("port label {label:?} is already used in this group (line {first})"),
                );
            } else {
                let line = p.span().map(|s| self.sm.line_col(s.start).0).unwrap_or(0);
                seen_ports.insert(label.clone(), line);
            }
            let ppath = child(&path, p);
            let (attrs, _) = self.items(&p.body, &ppath, &schema::PORT);
            let mut port = Port {
                label,
                ..Port::default()
            };
            let mut is_static = false;
            for a in attrs {
                match a.key.as_str() {
                    "static" => {
                        if let Some(v) = self.int(a, &ppath) {
                            if !(0..=65535).contains(&v) {
                                self.error(
                                    a.value.span(),
                                    &ppath,
                                    format!("static port {v} is not between 0 and 65535"),
                                );
                            }
                            port.value = v;
                            is_static = true;
                        }
                    }
                    "to" => set(&mut port.to, self.int_in(a, &ppath, -1..=65535)),
                    "host_network" => set(&mut port.host_network, self.string(a, &ppath)),
                    _ => {}
                }
            }
            if is_static {
                n.reserved_ports.push(port);
            } else {
                n.dynamic_ports.push(port);
            }
        }
        n
    }

    /// A task's `resources`; cpu below 1 MHz and memory below 10 MB are errors here,
    /// where they can be pointed at, before defaults hide them.
    pub fn resources(&mut self, b: &Block, path: &str) -> Resources {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::RESOURCES);
        let mut r = Resources {
            cpu: 0,
            memory_mb: 0,
            ..Resources::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "cpu" => {
                    if let Some(v) = self.int_max(a, &path, api::MAX_AMOUNT) {
                        if v < 1 {
                            self.error(
                                a.value.span(),
                                &path,
                                format!("cpu must be at least 1 MHz, got {v}"),
                            );
                        }
                        r.cpu = v;
                    }
                }
                "cores" => set(&mut r.cores, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                "memory" => {
                    if let Some(v) = self.int_max(a, &path, api::MAX_AMOUNT) {
                        if v < 10 {
                            self.error(
                                a.value.span(),
                                &path,
                                format!("memory must be at least 10 MB, got {v}"),
                            );
                        }
                        r.memory_mb = v;
                    }
                }
                // -1: no memory limit at all (Nomad's oversubscription).
                "memory_max" => set(
                    &mut r.memory_max_mb,
                    self.int_in(a, &path, -1..=api::MAX_AMOUNT),
                ),
                "disk" => set(&mut r.disk_mb, self.int_in(a, &path, 0..=api::MAX_AMOUNT)),
                _ => {}
            }
        }
        r
    }

    pub fn lifecycle(&mut self, b: &Block, path: &str) -> Lifecycle {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::LIFECYCLE);
        let mut l = Lifecycle::default();
        for a in attrs {
            match a.key.as_str() {
                "hook" => set(&mut l.hook, self.one_of(a, &path, schema::LIFECYCLE_HOOKS)),
                "sidecar" => set(&mut l.sidecar, self.bool(a, &path)),
                _ => {}
            }
        }
        if l.hook.is_empty() {
            self.error(
                b.ident.span(),
                &path,
                "lifecycle needs a `hook` (prestart, poststart or poststop)",
            );
        }
        l
    }

    /// `dispatch_payload { file = "..." }`: where a dispatched payload goes in `local/`.
    pub fn dispatch_payload(&mut self, b: &Block, path: &str) -> api::DispatchPayloadConfig {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::DISPATCH_PAYLOAD);
        let mut d = api::DispatchPayloadConfig::default();
        for a in attrs {
            if a.key.as_str() == "file" {
                set(&mut d.file, self.string(a, &path));
            }
        }
        if d.file.is_empty() && !b.body.has_attribute("file") {
            self.error(
                b.ident.span(),
                &path,
                "dispatch_payload needs a `file` (a path under the task's local/ directory)",
            );
        }
        d
    }

    pub fn artifact(&mut self, b: &Block, path: &str) -> api::TaskArtifact {
        let (path, attrs, blocks) = self.unlabelled(b, path, &schema::ARTIFACT);
        let mut art = api::TaskArtifact::default();
        for a in attrs {
            match a.key.as_str() {
                "source" => set(&mut art.getter_source, self.string(a, &path)),
                "destination" => set(&mut art.relative_dest, self.string(a, &path)),
                "mode" => set(
                    &mut art.getter_mode,
                    self.one_of(a, &path, schema::ARTIFACT_MODES),
                ),
                "options" => art
                    .getter_options
                    .extend(self.string_map(a, &path).unwrap_or_default()),
                _ => {}
            }
        }
        for blk in blocks {
            if blk.ident.as_str() == "options" {
                art.getter_options.extend(self.string_map_block(blk, &path));
            }
        }
        if art.getter_source.is_empty() && !b.body.has_attribute("source") {
            self.error(
                b.ident.span(),
                &path,
                "artifact needs a `source` (the URL to download)",
            );
        }
        art
    }

    /// `template { data | source, destination, ... }`: a file the agent renders.
    pub fn template(&mut self, b: &Block, path: &str) -> api::Template {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::TEMPLATE);
        let mut t = api::Template::default();
        for a in attrs {
            match a.key.as_str() {
                "data" => set(&mut t.embedded_tmpl, self.string(a, &path)),
                "source" => set(&mut t.source_path, self.string(a, &path)),
                "destination" => set(&mut t.dest_path, self.string(a, &path)),
                "perms" => {
                    if let Some(p) = self.string(a, &path) {
                        if api::parse_perms(&p).is_none() {
                            self.error(
                                a.value.span(),
                                &path,
                                format!(
                                    "perms {p:?} is not an octal file mode such as \"644\" \
                                     (at most \"777\")"
                                ),
                            );
                        }
                        t.perms = p;
                    }
                }
                "left_delimiter" => set(&mut t.left_delim, self.string(a, &path)),
                "right_delimiter" => set(&mut t.right_delim, self.string(a, &path)),
                "env" => set(&mut t.envvars, self.bool(a, &path)),
                "change_mode" => match self.one_of(a, &path, schema::TEMPLATE_CHANGE_MODES) {
                    Some(m) if m == "script" => self.error(
                        a.value.span(),
                        &path,
                        "change_mode \"script\" is not supported by Drover; use restart, \
                             signal or noop",
                    ),
                    m => set(&mut t.change_mode, m),
                },
                "change_signal" => set(&mut t.change_signal, self.string(a, &path)),
                "splay" => set(&mut t.splay, self.duration(a, &path)),
                "error_on_missing_key" => set(&mut t.err_missing_key, self.bool(a, &path)),
                _ => {}
            }
        }
        if t.embedded_tmpl.is_empty()
            && t.source_path.is_empty()
            && !b.body.has_attribute("data")
            && !b.body.has_attribute("source")
        {
            self.error(
                b.ident.span(),
                &path,
                "template needs `data` (the template text) or `source` (a template file)",
            );
        }
        if t.dest_path.is_empty() && !b.body.has_attribute("destination") {
            self.error(
                b.ident.span(),
                &path,
                "template needs a `destination` (a path in the task directory)",
            );
        }
        t.canonicalize();
        t
    }

    pub fn logs(&mut self, b: &Block, path: &str) -> LogConfig {
        let (path, attrs, _) = self.unlabelled(b, path, &schema::LOGS);
        let mut l = LogConfig::default();
        for a in attrs {
            match a.key.as_str() {
                "max_files" => set(
                    &mut l.max_files,
                    self.int_in(a, &path, 1..=api::MAX_LOG_FILES),
                ),
                "max_file_size" => set(
                    &mut l.max_file_size_mb,
                    self.int_in(a, &path, 1..=api::MAX_LOG_FILE_MB),
                ),
                "disabled" => set(&mut l.disabled, self.bool(a, &path)),
                "enabled" => {
                    if let Some(e) = self.bool(a, &path) {
                        l.disabled = !e;
                    }
                }
                _ => {}
            }
        }
        l
    }
}

/// Assigns a value read without error; a failed read was already reported.
/// Writes `value` into `slot` when there is one (a bad or missing value keeps the default).
pub(crate) fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
