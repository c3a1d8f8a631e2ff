//! Lowering of the Nomad features Drover records but does not act on yet (`periodic`,
//! `parameterized`, `service` with its checks, host `volume`s), and the positioned
//! errors for the features Drover rejects on purpose.
//!
//! Rejected on purpose: Consul Connect (`connect` in a service), Vault (`vault` blocks)
//! and CSI (`volume` of type "csi", `csi_plugin`). Each ties the job to a HashiCorp
//! system Drover will not integrate with, and running the job without it would not be
//! a degraded version of the same job: tasks would start without their secrets, their
//! service mesh or their storage. Failing at parse time, at the block, says so plainly.

use crate::parts::child;
use crate::reader::Reader;
use crate::schema;
use api::{ParameterizedJobConfig, PeriodicConfig, Service, ServiceCheck, VolumeRequest};
use hcl_edit::structure::Block;
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
        self.warning(
            b.ident.span(),
            &path,
            "Drover records the schedule but does not launch periodic jobs yet: \
             submitting the job places it once, now",
        );
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
        self.warning(
            b.ident.span(),
            &path,
            "Drover records the parameters but cannot dispatch parameterized jobs yet: \
             submitting the job places it once, now",
        );
        p
    }

    /// A group's or task's `service` block. An empty name is filled in later, when the
    /// job's name is known.
    pub fn service(&mut self, b: &Block, path: &str) -> Service {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, blocks) = self.items(&b.body, &path, &schema::SERVICE);
        let mut s = Service {
            provider: "consul".into(),
            ..Service::default()
        };
        for a in attrs {
            match a.key.as_str() {
                "name" => set(&mut s.name, self.string(a, &path)),
                "port" => set(&mut s.port_label, self.string(a, &path)),
                "tags" => set(&mut s.tags, self.string_list(a, &path)),
                "provider" => set(
                    &mut s.provider,
                    self.one_of(a, &path, schema::SERVICE_PROVIDERS),
                ),
                _ => {}
            }
        }
        let mut rejected = false;
        for blk in blocks {
            match blk.ident.as_str() {
                "check" => s.checks.push(self.check(blk, &path)),
                "connect" => {
                    self.reject(blk.ident.span(), &path, &CONNECT);
                    rejected = true;
                }
                _ => {}
            }
        }
        if !rejected {
            self.warning(
                b.ident.span(),
                &path,
                "Drover does not register services or run their checks yet; \
                 the service is recorded in the job only",
            );
        }
        s
    }

    fn check(&mut self, b: &Block, path: &str) -> ServiceCheck {
        self.no_label(b, path);
        let path = child(path, b);
        let (attrs, _) = self.items(&b.body, &path, &schema::CHECK);
        let mut c = ServiceCheck::default();
        for a in attrs {
            match a.key.as_str() {
                "name" => set(&mut c.name, self.string(a, &path)),
                "type" => set(
                    &mut c.check_type,
                    self.one_of(a, &path, schema::CHECK_TYPES),
                ),
                "path" => set(&mut c.path, self.string(a, &path)),
                "port" => set(&mut c.port_label, self.string(a, &path)),
                "interval" => set(&mut c.interval, self.duration(a, &path)),
                "timeout" => set(&mut c.timeout, self.duration(a, &path)),
                _ => {}
            }
        }
        if c.check_type.is_empty() && !b.body.has_attribute("type") {
            self.error(
                b.ident.span(),
                &path,
                "a check needs a `type` (http, tcp, grpc or script)",
            );
        }
        c
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

/// Nomad's default service and check names, once the job's name is known.
pub fn default_service_names(job: &mut api::Job) {
    let job_name = if job.name.is_empty() {
        job.id.clone()
    } else {
        job.name.clone()
    };
    for g in &mut job.task_groups {
        let group_default = format!("{job_name}-{}", g.name);
        name_services(&mut g.services, &group_default);
        for t in &mut g.tasks {
            let task_default = format!("{job_name}-{}-{}", g.name, t.name);
            name_services(&mut t.services, &task_default);
        }
    }
}

fn name_services(services: &mut [Service], default: &str) {
    for s in services {
        if s.name.is_empty() {
            s.name = default.to_string();
        }
        for c in &mut s.checks {
            if c.name.is_empty() {
                c.name = format!("service: {:?} check", s.name);
            }
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
