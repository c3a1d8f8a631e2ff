//! `service` and `check` blocks of a job: what a group or task offers and how its health
//! is judged. Registered instances are [`crate::ServiceRegistration`]s.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SERVICE_PROVIDER_NOMAD: &str = "nomad";
pub const SERVICE_PROVIDER_CONSUL: &str = "consul";
pub const SERVICE_PROVIDERS: &[&str] = &[SERVICE_PROVIDER_CONSUL, SERVICE_PROVIDER_NOMAD];

pub const CHECK_HTTP: &str = "http";
pub const CHECK_TCP: &str = "tcp";
pub const CHECK_GRPC: &str = "grpc";
pub const CHECK_SCRIPT: &str = "script";
/// Check types the Nomad provider runs.
pub const NOMAD_CHECK_TYPES: &[&str] = &[CHECK_HTTP, CHECK_TCP];
/// Check types a Consul service may declare.
pub const CONSUL_CHECK_TYPES: &[&str] = &[CHECK_GRPC, CHECK_HTTP, CHECK_SCRIPT, CHECK_TCP];

pub const ADDRESS_MODE_AUTO: &str = "auto";
pub const ADDRESS_MODE_DRIVER: &str = "driver";
/// A service's `address_mode` values; "auto" is the default.
pub const SERVICE_ADDRESS_MODES: &[&str] = &["auto", "host", "driver", "alloc", "alloc_ipv6"];
/// A check's `address_mode` values ("auto" is for services only).
pub const CHECK_ADDRESS_MODES: &[&str] = &["host", "driver", "alloc", "alloc_ipv6"];

pub const ON_UPDATE_REQUIRE_HEALTHY: &str = "require_healthy";
pub const ON_UPDATE_IGNORE_WARNINGS: &str = "ignore_warnings";
pub const ON_UPDATE_IGNORE: &str = "ignore";
pub const ON_UPDATE_MODES: &[&str] = &[
    ON_UPDATE_REQUIRE_HEALTHY,
    ON_UPDATE_IGNORE_WARNINGS,
    ON_UPDATE_IGNORE,
];
/// A check's `initial_status` values (or empty).
pub const CHECK_INITIAL_STATUSES: &[&str] = &["passing", "warning", "critical"];
/// A check's `protocol` values.
pub const CHECK_PROTOCOLS: &[&str] = &["http", "https"];
/// The shortest check interval and timeout, in nanoseconds (Nomad's and Consul's 1s).
pub const MIN_CHECK_INTERVAL: i64 = 1_000_000_000;
/// The `grace` a `check_restart` block has when it does not set one, in nanoseconds.
pub const DEFAULT_CHECK_RESTART_GRACE: i64 = 1_000_000_000;

/// A service a group or task offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    /// The task a group-level service belongs to, or the task of a task-level one.
    pub task_name: String,
    /// A port label of the group's network, or a port number.
    pub port_label: String,
    /// "auto" (default), "host", "driver" or "alloc".
    pub address_mode: String,
    /// A fixed address to advertise instead of the node's.
    pub address: String,
    pub enable_tag_override: bool,
    pub tags: Vec<String>,
    /// Tags used instead of `tags` while the allocation is an unpromoted canary.
    pub canary_tags: Vec<String>,
    pub checks: Vec<ServiceCheck>,
    pub meta: BTreeMap<String, String>,
    pub canary_meta: BTreeMap<String, String>,
    pub namespace: String,
    /// "require_healthy" (default), "ignore_warnings" or "ignore".
    pub on_update: String,
    /// "consul" (default, recorded only) or "nomad".
    pub provider: String,
    pub cluster: String,
    /// A `check_restart` for every check of the service; a check's own settings win
    /// (merged into each check by `canonicalize`).
    pub check_restart: Option<CheckRestart>,
    /// Consul Connect, kept only so that validation can refuse it (Drover does not run
    /// the mesh); never produced by Drover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<serde_json::Value>,
}

/// A health check of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    /// "http", "tcp", "grpc" or "script".
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    /// "http" (default) or "https".
    pub protocol: String,
    pub port_label: String,
    pub address_mode: String,
    /// Nanoseconds.
    pub interval: i64,
    /// Nanoseconds.
    pub timeout: i64,
    pub initial_status: String,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    pub body: String,
    pub check_restart: Option<CheckRestart>,
    pub task_name: String,
    pub success_before_passing: i64,
    pub failures_before_critical: i64,
    pub failures_before_warning: i64,
    /// "require_healthy" (default), "ignore_warnings" or "ignore".
    pub on_update: String,
    #[serde(rename = "GRPCService")]
    pub grpc_service: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    pub expose: bool,
}

/// Restart a task whose check keeps failing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    /// Consecutive failures before the task is restarted; 0 disables.
    pub limit: i64,
    /// Nanoseconds after the task starts during which failures are not counted.
    pub grace: i64,
    pub ignore_warnings: bool,
}

impl Service {
    /// The provider, with Nomad's default ("consul") when unset.
    pub fn provider(&self) -> &str {
        if self.provider.is_empty() {
            SERVICE_PROVIDER_CONSUL
        } else {
            &self.provider
        }
    }

    /// Fills in what Nomad fills in: the name (`<job>-<group>-<task>` for a task's
    /// service, `<job>-<group>` for a group's, with `${JOB}`, `${TASKGROUP}`, `${TASK}`
    /// and `${BASE}` replaced), address mode, on_update, provider, and for each check its
    /// name, task, on_update, HTTP protocol and method, and the service's `check_restart`
    /// merged under its own. `task` is `None` for a group service.
    pub fn canonicalize(&mut self, job: &str, group: &str, task: Option<&str>, namespace: &str) {
        // Nomad calls a group service's task "group" in the name's variables.
        let task_var = task.unwrap_or("group");
        let base = format!("{job}-{group}-{task_var}");
        if self.name.is_empty() {
            self.name = match task {
                Some(t) => format!("{job}-{group}-{t}"),
                None => format!("{job}-{group}"),
            };
        } else if self.name.contains("${") {
            for (var, value) in [
                ("${JOB}", job),
                ("${TASKGROUP}", group),
                ("${GROUP}", group),
                ("${TASK}", task_var),
                ("${BASE}", base.as_str()),
            ] {
                self.name = self.name.replace(var, value);
            }
        }
        if let Some(t) = task {
            if self.task_name.is_empty() {
                self.task_name = t.to_string();
            }
        }
        if self.address_mode.is_empty() {
            self.address_mode = ADDRESS_MODE_AUTO.into();
        }
        if self.on_update.is_empty() {
            self.on_update = ON_UPDATE_REQUIRE_HEALTHY.into();
        }
        if self.provider.is_empty() {
            self.provider = SERVICE_PROVIDER_CONSUL.into();
        }
        if self.cluster.is_empty() {
            self.cluster = "default".into();
        }
        if self.provider == SERVICE_PROVIDER_NOMAD {
            self.namespace = namespace.to_string();
        } else if self.namespace.is_empty() {
            self.namespace = "default".into();
        }
        for c in &mut self.checks {
            // Nomad reads check types case-insensitively; one spelling for everyone after.
            if c.check_type.chars().any(|ch| ch.is_ascii_uppercase()) {
                c.check_type = c.check_type.to_ascii_lowercase();
            }
            if c.name.is_empty() {
                c.name = format!("service: {:?} check", self.name);
            }
            if c.task_name.is_empty() {
                c.task_name = self.task_name.clone();
            }
            if c.on_update.is_empty() {
                c.on_update = self.on_update.clone();
            }
            if c.check_type == CHECK_HTTP {
                if c.protocol.is_empty() {
                    c.protocol = "http".into();
                }
                if c.method.is_empty() {
                    c.method = "GET".into();
                }
            }
            c.check_restart =
                CheckRestart::merge(self.check_restart.as_ref(), c.check_restart.take());
        }
    }
}

impl CheckRestart {
    /// A `check_restart` block with nothing set: no restarts, Nomad's 1s grace.
    pub fn new() -> Self {
        CheckRestart {
            limit: 0,
            grace: DEFAULT_CHECK_RESTART_GRACE,
            ignore_warnings: false,
        }
    }

    /// A check's `check_restart` over its service's, as Nomad merges them: the check's
    /// non-zero limit and grace win, and ignore_warnings is on when either sets it.
    pub fn merge(
        service: Option<&CheckRestart>,
        check: Option<CheckRestart>,
    ) -> Option<CheckRestart> {
        match (service, check) {
            (None, c) => c,
            (Some(s), None) => Some(s.clone()),
            (Some(s), Some(c)) => Some(CheckRestart {
                limit: if c.limit != 0 { c.limit } else { s.limit },
                grace: if c.grace != 0 { c.grace } else { s.grace },
                ignore_warnings: c.ignore_warnings || s.ignore_warnings,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_check() -> ServiceCheck {
        ServiceCheck {
            check_type: "http".into(),
            path: "/health".into(),
            ..ServiceCheck::default()
        }
    }

    #[test]
    fn task_services_get_nomads_names_and_defaults() {
        let mut s = Service {
            checks: vec![http_check()],
            ..Service::default()
        };
        s.canonicalize("web", "api", Some("server"), "prod");
        assert_eq!(s.name, "web-api-server");
        assert_eq!(s.task_name, "server");
        assert_eq!(s.address_mode, "auto");
        assert_eq!(s.on_update, "require_healthy");
        assert_eq!(s.provider, "consul");
        assert_eq!(s.namespace, "default");
        let c = &s.checks[0];
        assert_eq!(c.name, "service: \"web-api-server\" check");
        assert_eq!(c.task_name, "server");
        assert_eq!(c.on_update, "require_healthy");
        assert_eq!((c.protocol.as_str(), c.method.as_str()), ("http", "GET"));
        assert_eq!(c.check_restart, None);
    }

    #[test]
    fn group_services_are_named_after_job_and_group_and_interpolate_names() {
        let mut s = Service {
            provider: "nomad".into(),
            on_update: "ignore".into(),
            checks: vec![ServiceCheck {
                check_type: "tcp".into(),
                ..ServiceCheck::default()
            }],
            ..Service::default()
        };
        s.canonicalize("web", "api", None, "prod");
        assert_eq!(s.name, "web-api");
        assert_eq!(s.task_name, "", "a group service belongs to no task");
        assert_eq!(
            s.namespace, "prod",
            "nomad services live in the job's namespace"
        );
        assert_eq!(
            s.checks[0].on_update, "ignore",
            "inherited from the service"
        );
        assert_eq!(s.checks[0].protocol, "", "only http checks get a protocol");

        let mut s = Service {
            name: "${JOB}-x-${TASK}".into(),
            ..Service::default()
        };
        s.canonicalize("web", "api", Some("t"), "default");
        assert_eq!(s.name, "web-x-t");
        let mut s = Service {
            name: "${BASE}".into(),
            ..Service::default()
        };
        s.canonicalize("web", "api", None, "default");
        assert_eq!(s.name, "web-api-group");
    }

    #[test]
    fn a_services_check_restart_applies_to_its_checks_under_their_own() {
        let mut s = Service {
            check_restart: Some(CheckRestart {
                limit: 3,
                grace: 5_000_000_000,
                ignore_warnings: false,
            }),
            checks: vec![
                http_check(),
                ServiceCheck {
                    check_restart: Some(CheckRestart {
                        limit: 1,
                        grace: 0,
                        ignore_warnings: true,
                    }),
                    ..http_check()
                },
            ],
            ..Service::default()
        };
        s.canonicalize("j", "g", Some("t"), "default");
        assert_eq!(s.checks[0].check_restart, s.check_restart);
        assert_eq!(
            s.checks[1].check_restart,
            Some(CheckRestart {
                limit: 1,
                grace: 5_000_000_000,
                ignore_warnings: true,
            })
        );
    }
}
