//! Lowering of the Nomad features beyond tasks and placement: `periodic`,
//! `parameterized` (launched by the server) and host `volume`s (recorded, not acted on yet), `service` blocks with
//! their checks (registered and checked when `provider = "nomad"`, recorded otherwise),
//! and the positioned errors for the features Drover rejects on purpose.
//!
//! Rejected on purpose: Consul Connect (`connect` in a service), Vault (`vault` blocks)
//! and CSI (`volume` of type "csi", `csi_plugin`). Each ties the job to a HashiCorp
//! system Drover will not integrate with, and running the job without it would not be
//! a degraded version of the same job: tasks would start without their secrets, their
//! service mesh or their storage. Failing at parse time, at the block, says so plainly.

use crate::parts::child;
use crate::reader::Reader;
use crate::schema;
use api::{
    CheckRestart, ParameterizedJobConfig, PeriodicConfig, Service, ServiceCheck, VolumeRequest,
};
use hcl_edit::structure::{Block, Structure};
use hcl_edit::Span;

/// A feature Drover rejects on purpose: what it is, why, and what to do instead.
pub struct Rejected {
    pub what: &'static str,
    pub why: &'static str,
    pub instead: &'static str,
}

pub const VAULT: Rejected = Rejected {
    what: "Vault integration (the vault block)",
    why: "tasks would start without the Vault token and secrets they ask for",
    instead:
        "remove the vault block, and any Vault secrets read in templates, to run this job on Drover",
};

pub const CONNECT: Rejected = Rejected {
    what: "Consul Connect (the connect block)",
    why: "the service mesh sidecars and upstreams this service expects would never be started",
    instead: "remove the connect block to run the service without the mesh",
};

pub const CSI: Rejected = Rejected {
    what: "CSI storage (a csi volume or csi_plugin)",
    why: "the storage the tasks expect would never be attached, and their data would go to throwaway directories",
    instead: "use a host volume or the ephemeral_disk instead",
};

impl Reader<'_> {
    /// The positioned error for a feature Drover rejects on purpose.
    pub fn reject(&mut self, span: Option<std::ops::Range<usize>>, path: &str, r: &Rejected) {
        self.error(
            span,
            path,
            format!(
                "{} is not supported by Drover, on purpose: {}; {}",
                r.what, r.why, r.instead
            ),
        );
    }

    /// `periodic { cron = "..." }`; only batch and sysbatch jobs may be periodic.
    pub fn periodic(&mut self, b: &Block, path: &str, job_type: &str) -> PeriodicConfig {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, _) = self.items(&b.body, &path, &schema::PERIODIC);
        let mut p = PeriodicConfig {
            enabled: true,
            spec_type: "cron".into(),
            time_zone: "UTC".into(),
            ..PeriodicConfig::default()
        };
        for a in &attrs {
            match a.key.as_str() {
                "cron" => {
                    if let Some(spec) = self.string(a, &path) {
                        if let Err(m) = crate::cron::check(&spec) {
                            self.error(a.value.span(), &path, format!("invalid cron: {m}"));
                        }
                        p.spec = spec;
                    }
                }
                "crons" => {
                    if let Some(specs) = self.string_list(a, &path) {
                        for spec in &specs {
                            if let Err(m) = crate::cron::check(spec) {
                                self.error(a.value.span(), &path, format!("invalid cron: {m}"));
                            }
                        }
                        p.specs = specs;
                    }
                }
                "prohibit_overlap" => set(&mut p.prohibit_overlap, self.bool(a, &path)),
                "time_zone" => set(&mut p.time_zone, self.string(a, &path)),
                "enabled" => set(&mut p.enabled, self.bool(a, &path)),
                _ => {}
            }
        }
        let has = |n: &str| attrs.iter().any(|a| a.key.as_str() == n);
        match (has("cron"), has("crons")) {
            (false, false) => self.error(
                b.ident.span(),
                &path,
                "periodic needs a `cron = \"...\"` (or `crons = [...]`) schedule",
            ),
            (true, true) => self.error(
                b.ident.span(),
                &path,
                "periodic takes `cron` or `crons`, not both",
            ),
            _ => {}
        }
        if !matches!(job_type, api::JOB_TYPE_BATCH | api::JOB_TYPE_SYSBATCH) {
            self.error(
                b.ident.span(),
                &path,
                format!("only batch and sysbatch jobs can be periodic; this job is {job_type:?}"),
            );
        }
        p
    }

    /// `parameterized { payload, meta_required, meta_optional }`.
    pub fn parameterized(
        &mut self,
        b: &Block,
        path: &str,
        job_type: &str,
    ) -> ParameterizedJobConfig {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, _) = self.items(&b.body, &path, &schema::PARAMETERIZED);
        let mut p = ParameterizedJobConfig {
            payload: "optional".into(),
            ..ParameterizedJobConfig::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "payload" => set(&mut p.payload, self.one_of(a, &path, schema::PAYLOAD_MODES)),
                "meta_required" => set(&mut p.meta_required, self.string_list(a, &path)),
                "meta_optional" => set(&mut p.meta_optional, self.string_list(a, &path)),
                _ => {}
            }
        }
        if !matches!(job_type, api::JOB_TYPE_BATCH | api::JOB_TYPE_SYSBATCH) {
            self.error(
                b.ident.span(),
                &path,
                format!(
                    "only batch and sysbatch jobs can be parameterized; this job is {job_type:?}"
                ),
            );
        }
        p
    }

    /// A group's or task's `service` block, with every Nomad attribute and block. Names
    /// and other defaults are filled in by `api::Job::canonicalize`; Nomad's rules for
    /// one service (`api::Service::problems`) are reported here, at the attribute.
    pub fn service(&mut self, b: &Block, path: &str) -> Service {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, blocks) = self.items(&b.body, &path, &schema::SERVICE);
        let mut s = Service::default();
        for a in attrs {
            match a.key.as_str() {
                "name" => set(&mut s.name, self.string(a, &path)),
                "port" => set(&mut s.port_label, self.string(a, &path)),
                "tags" => set(&mut s.tags, self.string_list(a, &path)),
                "canary_tags" => set(&mut s.canary_tags, self.string_list(a, &path)),
                "enable_tag_override" => set(&mut s.enable_tag_override, self.bool(a, &path)),
                "address" => set(&mut s.address, self.string(a, &path)),
                "address_mode" => set(
                    &mut s.address_mode,
                    self.one_of(a, &path, api::SERVICE_ADDRESS_MODES),
                ),
                "on_update" => set(
                    &mut s.on_update,
                    self.one_of(a, &path, api::ON_UPDATE_MODES),
                ),
                "provider" => set(
                    &mut s.provider,
                    self.one_of(a, &path, api::SERVICE_PROVIDERS),
                ),
                "task" => set(&mut s.task_name, self.string(a, &path)),
                "cluster" => set(&mut s.cluster, self.string(a, &path)),
                "meta" => set(&mut s.meta, self.string_map(a, &path)),
                "canary_meta" => set(&mut s.canary_meta, self.string_map(a, &path)),
                _ => {}
            }
        }
        // The service's check_restart is the base of each check's own, so it is read first.
        let restart_block = blocks
            .iter()
            .copied()
            .rfind(|blk| blk.ident.as_str() == "check_restart");
        if let Some(blk) = restart_block {
            s.check_restart = Some(self.check_restart(blk, &path, api::CheckRestart::new()));
        }
        let mut check_blocks = Vec::new();
        let mut rejected = false;
        for blk in blocks {
            match blk.ident.as_str() {
                "check" => {
                    s.checks
                        .push(self.check(blk, &path, s.check_restart.as_ref()));
                    check_blocks.push(blk);
                }
                "check_restart" if !std::ptr::eq(blk, restart_block.unwrap_or(blk)) => self.error(
                    blk.ident.span(),
                    &path,
                    "a service takes one check_restart block",
                ),
                "meta" => s.meta.extend(self.string_map_block(blk, &path)),
                "canary_meta" => s.canary_meta.extend(self.string_map_block(blk, &path)),
                "connect" => {
                    self.reject(blk.ident.span(), &path, &CONNECT);
                    rejected = true;
                }
                _ => {}
            }
        }
        for p in s.problems() {
            let (body_block, at_path) = match p.check {
                Some(i) => (check_blocks[i], child(&path, check_blocks[i])),
                None => (b, path.clone()),
            };
            let mut span = field_span(body_block, p.field);
            if span.is_none() && p.field == "check_restart" {
                span = restart_block.and_then(|r| r.ident.span());
            }
            let span = span.or_else(|| body_block.ident.span());
            self.error(span, &at_path, p.message);
        }
        if !rejected && s.provider() == api::SERVICE_PROVIDER_CONSUL {
            self.warning(
                b.ident.span(),
                &path,
                "Drover registers only `provider = \"nomad\"` services; this consul service \
                 is recorded in the job, but not registered and its checks are not run",
            );
        }
        s
    }

    /// A `check` block; `service_restart` is its service's `check_restart`, which the
    /// check's own overrides attribute by attribute.
    fn check(
        &mut self,
        b: &Block,
        path: &str,
        service_restart: Option<&CheckRestart>,
    ) -> ServiceCheck {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, blocks) = self.items(&b.body, &path, &schema::CHECK);
        let mut c = ServiceCheck::default();
        for a in attrs {
            match a.key.as_str() {
                "name" => set(&mut c.name, self.string(a, &path)),
                "type" => set(&mut c.check_type, self.string(a, &path)),
                "command" => set(&mut c.command, self.string(a, &path)),
                "args" => set(&mut c.args, self.string_list(a, &path)),
                "path" => set(&mut c.path, self.string(a, &path)),
                "protocol" => set(&mut c.protocol, self.one_of(a, &path, api::CHECK_PROTOCOLS)),
                "port" => set(&mut c.port_label, self.string(a, &path)),
                "address_mode" => set(&mut c.address_mode, self.string(a, &path)),
                "interval" => set(&mut c.interval, self.duration(a, &path)),
                "timeout" => set(&mut c.timeout, self.duration(a, &path)),
                "initial_status" => set(&mut c.initial_status, self.string(a, &path)),
                "tls_server_name" => set(&mut c.tls_server_name, self.string(a, &path)),
                "tls_skip_verify" => set(&mut c.tls_skip_verify, self.bool(a, &path)),
                "method" => set(&mut c.method, self.string(a, &path)),
                "header" => {
                    if let Some(v) = self.value(a, &path) {
                        self.header_values(&v, a, &path, &mut c);
                    }
                }
                "body" => set(&mut c.body, self.string(a, &path)),
                "success_before_passing" => set(&mut c.success_before_passing, self.int(a, &path)),
                "failures_before_critical" => {
                    set(&mut c.failures_before_critical, self.int(a, &path))
                }
                "failures_before_warning" => {
                    set(&mut c.failures_before_warning, self.int(a, &path))
                }
                "on_update" => set(
                    &mut c.on_update,
                    self.one_of(a, &path, api::ON_UPDATE_MODES),
                ),
                "grpc_service" => set(&mut c.grpc_service, self.string(a, &path)),
                "grpc_use_tls" => set(&mut c.grpc_use_tls, self.bool(a, &path)),
                "expose" => set(&mut c.expose, self.bool(a, &path)),
                "task" => set(&mut c.task_name, self.string(a, &path)),
                _ => {}
            }
        }
        // Without its own check_restart a check takes its service's, as in Nomad.
        c.check_restart = service_restart.cloned();
        for blk in blocks {
            match blk.ident.as_str() {
                "check_restart" => {
                    let base = service_restart.cloned().unwrap_or_else(CheckRestart::new);
                    c.check_restart = Some(self.check_restart(blk, &path, base));
                }
                "header" => {
                    self.no_label(blk, &path);
                    let hpath = child(&path, blk);
                    for s in blk.body.iter() {
                        match s {
                            Structure::Attribute(a) => {
                                if let Some(v) = self.value(a, &hpath) {
                                    let one = serde_json::json!({ a.key.as_str(): v });
                                    self.header_values(&one, a, &hpath, &mut c);
                                }
                            }
                            Structure::Block(inner) => self.error(
                                inner.ident.span(),
                                &hpath,
                                "only `Name = [\"value\", ...]` lines go in a header block",
                            ),
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }

    /// Headers from `{ Name = ["value", ...] }` into the check; a lone string is one value.
    fn header_values(
        &mut self,
        v: &serde_json::Value,
        a: &hcl_edit::structure::Attribute,
        path: &str,
        c: &mut ServiceCheck,
    ) {
        let Some(map) = v.as_object() else {
            self.error(
                a.value.span(),
                path,
                "header must be a map of header names to lists of values",
            );
            return;
        };
        for (name, values) in map {
            let list = match values {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(crate::value::to_str)
                    .collect::<Option<Vec<_>>>(),
                other => crate::value::to_str(other).map(|s| vec![s]),
            };
            match list {
                Some(list) => {
                    c.header.entry(name.clone()).or_default().extend(list);
                }
                None => self.error(
                    a.value.span(),
                    path,
                    format!("header {name:?} must be a list of strings"),
                ),
            }
        }
    }

    /// `check_restart { limit grace ignore_warnings }` over `base`.
    fn check_restart(&mut self, b: &Block, path: &str, base: CheckRestart) -> CheckRestart {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, _) = self.items(&b.body, &path, &schema::CHECK_RESTART);
        let mut r = base;
        for a in attrs {
            match a.key.as_str() {
                "limit" => set(&mut r.limit, self.int_max(a, &path, api::MAX_AMOUNT)),
                "grace" => set(&mut r.grace, self.duration(a, &path)),
                "ignore_warnings" => set(&mut r.ignore_warnings, self.bool(a, &path)),
                _ => {}
            }
        }
        r
    }

    /// A group's `volume "name" { ... }`: host volumes are recorded, CSI is rejected.
    pub fn volume(&mut self, b: &Block, path: &str) -> Option<VolumeRequest> {
        let name = self.label(b, path)?;
        if let Some(m) = api::path_name_problem(&name) {
            self.error(
                b.labels[0].span(),
                path,
                format!("volume name {name:?} {m}"),
            );
        }
        let path = child(path, b);
        let (attrs, _) = self.items(&b.body, &path, &schema::VOLUME);
        let mut v = VolumeRequest {
            name: name.clone(),
            volume_type: "host".into(),
            source: name,
            read_only: false,
        };
        for a in attrs {
            match a.key.as_str() {
                "type" => {
                    if let Some(t) = self.one_of(a, &path, &["host", "csi"]) {
                        if t == "csi" {
                            self.reject(a.value.span(), &path, &CSI);
                        }
                        v.volume_type = t;
                    }
                }
                "source" => set(&mut v.source, self.string(a, &path)),
                "read_only" => set(&mut v.read_only, self.bool(a, &path)),
                _ => {}
            }
        }
        if v.volume_type == "host" {
            self.warning(
                b.ident.span(),
                &path,
                "Drover does not mount host volumes yet; the volume is recorded in the job only",
            );
        }
        Some(v)
    }
}

/// Nomad's default service and check names, once the job's name is known; decided by
/// `api::Job::canonicalize_services`.
pub fn default_service_names(job: &mut api::Job) {
    job.canonicalize_services();
}

/// Where `field` is set in `b`'s body: the attribute's value, or the nested block.
fn field_span(b: &Block, field: &str) -> Option<std::ops::Range<usize>> {
    if field.is_empty() {
        return None;
    }
    b.body.iter().find_map(|s| match s {
        Structure::Attribute(a) if a.key.as_str() == field => a.value.span(),
        Structure::Block(inner) if inner.ident.as_str() == field => inner.ident.span(),
        _ => None,
    })
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
