//! The agent's side of `provider = "nomad"` services: what an allocation offers
//! ([`plan`]: instances and their checks, with addresses resolved against the
//! allocation's ports and `${NOMAD_*}` interpolated), running the checks (`checks`), the
//! per-allocation state machine that decides which instances are registered and when a
//! failing check restarts its task (`hook`), and sending registrations to the servers
//! until they acknowledge them (`registry`).
//!
//! An instance is registered once the task(s) it belongs to run and, if it has checks,
//! once each has passed; it is deregistered while they do not run and before the
//! allocation's tasks are killed (then `shutdown_delay` is waited).

pub mod checks;
mod hook;
mod registry;

pub use checks::{Outcome, Probe};
pub use hook::{AllocServices, CheckResults, RestartRequest};
pub use registry::ServiceRegistry;

use crate::allocdir::TaskDirs;
use crate::driver::FsIsolation;
use crate::lifecycle::Role;
use crate::ports::AllocatedPort;
use crate::taskenv::TaskEnv;
use api::{Allocation, CheckQueryResult, Node, ServiceRegistration, TaskGroup};
use std::path::PathBuf;
use std::time::Duration;

/// A check's interval when the job gives none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// A check's timeout when the job gives none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest interval run, whatever the job says (a check is not a busy loop).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// One check of a planned instance.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedCheck {
    /// Stable across agent restarts: a hash of the allocation, the service and the check.
    pub id: String,
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    pub restart: Option<api::CheckRestart>,
    /// Readiness checks (`on_update = "ignore"`) do not count for deployment health.
    pub readiness: bool,
    /// The result before the first run (status pending).
    pub pending: CheckQueryResult,
}

/// One instance an allocation offers.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedService {
    /// Tags are the service's `tags`; [`Self::canary_tags`] replace them for a canary.
    pub registration: ServiceRegistration,
    pub canary_tags: Vec<String>,
    /// The tasks that must run for the instance to be registered and checked.
    pub tasks: Vec<String>,
    pub checks: Vec<PlannedCheck>,
    /// Why the instance cannot be registered (e.g. an unknown port label).
    pub error: Option<String>,
    /// `address_mode = "driver"`: the port to advertise on the address the task's driver
    /// gives it (a container's IP on its network). Until a driver reports one, or for
    /// drivers without a network of their own (raw_exec, exec), the registration keeps
    /// the host address and port.
    pub driver_port: Option<u16>,
}

impl PlannedService {
    /// The registration to send: canary tags for an unpromoted canary, when it has some.
    pub fn registration(&self, canary: bool) -> ServiceRegistration {
        self.registration_at(canary, None)
    }

    /// The registration to send, on `driver_ip` (the address one of its tasks' driver
    /// reported) when the service's `address_mode` is `driver`.
    pub fn registration_at(&self, canary: bool, driver_ip: Option<&str>) -> ServiceRegistration {
        let mut r = self.registration.clone();
        if let (Some(port), Some(ip)) = (self.driver_port, driver_ip.filter(|ip| !ip.is_empty())) {
            r.address = ip.to_string();
            r.port = i64::from(port);
        }
        if canary && !self.canary_tags.is_empty() {
            r.tags = self.canary_tags.clone();
        }
        r
    }
}

/// Two FNV-1a hashes as 32 hex digits: a check ID in Nomad's shape.
fn check_id(parts: &[&str]) -> String {
    let mut out = String::with_capacity(32);
    for basis in [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142] {
        let mut h = basis;
        for p in parts {
            for b in p.bytes().chain(std::iter::once(0)) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

fn nanos(n: i64, default: Duration) -> Duration {
    if n > 0 {
        Duration::from_nanos(n as u64)
    } else {
        default
    }
}

/// The node's address for instances without a port of the group's network.
fn node_ip(node: &Node, ports: &[AllocatedPort]) -> String {
    node.attributes
        .get("unique.network.ip-address")
        .cloned()
        .or_else(|| ports.first().map(|p| p.host_ip.clone()))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into())
}

/// The address and port a port label stands for under `address_mode`: a label of the
/// group's network (its host address and port; with `alloc` or `driver`, the port the
/// task sees), a port number used as is on the node's address, or none (port 0).
pub fn resolve_port(
    label: &str,
    address_mode: &str,
    ports: &[AllocatedPort],
    node_ip: &str,
) -> Result<(String, u16), String> {
    let label = label.trim();
    if label.is_empty() {
        return Ok((node_ip.to_string(), 0));
    }
    if let Some(p) = ports.iter().find(|p| p.label == label) {
        let port = match address_mode {
            "alloc" | "driver" if p.to > 0 => p.to,
            _ => p.value,
        };
        let ip = if p.host_ip.is_empty() {
            node_ip.to_string()
        } else {
            p.host_ip.clone()
        };
        return Ok((ip, port));
    }
    match label.parse::<u16>() {
        Ok(n) if n > 0 => Ok((node_ip.to_string(), n)),
        _ => Err(format!(
            "port {label:?} is neither a port label of the group's network nor a port number"
        )),
    }
}

/// The port `address_mode = "driver"` advertises on the driver's address: the label's
/// `to` (the port inside the container; its host port when it has none), or a port
/// number as is. `None` without a port.
pub fn driver_port(label: &str, ports: &[AllocatedPort]) -> Option<u16> {
    let label = label.trim();
    if let Some(p) = ports.iter().find(|p| p.label == label) {
        return Some(if p.to > 0 { p.to } else { p.value }).filter(|p| *p > 0);
    }
    label.parse::<u16>().ok().filter(|p| *p > 0)
}

/// The instances `alloc` offers (its group's and its tasks' `provider = "nomad"`
/// services), with their checks.
pub fn plan(
    alloc: &Allocation,
    group: &TaskGroup,
    node: &Node,
    ports: &[AllocatedPort],
) -> Vec<PlannedService> {
    let ip = node_ip(node, ports);
    let mut main: Vec<String> = group
        .tasks
        .iter()
        .filter(|t| Role::of(t) == Role::Main)
        .map(|t| t.name.clone())
        .collect();
    if main.is_empty() {
        main = group
            .tasks
            .iter()
            .filter(|t| Role::of(t).must_be_healthy())
            .map(|t| t.name.clone())
            .collect();
    }
    let group_task = api::Task::default();
    let mut out = Vec::new();
    for s in &group.services {
        let tasks = if group.tasks.iter().any(|t| t.name == s.task_name) {
            vec![s.task_name.clone()]
        } else {
            main.clone()
        };
        let owner = format!("group-{}", group.name);
        let env = env_for(node, alloc, &group_task, ports);
        out.extend(plan_one(
            alloc, node, s, &owner, "", tasks, &env, ports, &ip,
        ));
    }
    for t in &group.tasks {
        let env = env_for(node, alloc, t, ports);
        for s in &t.services {
            out.extend(plan_one(
                alloc,
                node,
                s,
                &t.name,
                &t.name,
                vec![t.name.clone()],
                &env,
                ports,
                &ip,
            ));
        }
    }
    out
}

/// The environment `${...}` in a service refers to (paths play no part in it).
fn env_for(node: &Node, alloc: &Allocation, task: &api::Task, ports: &[AllocatedPort]) -> TaskEnv {
    let none = PathBuf::new();
    let dirs = TaskDirs {
        dir: none.clone(),
        local: none.clone(),
        secrets: none.clone(),
        tmp: none.clone(),
        shared: none.clone(),
        stdout: none.clone(),
        stderr: none,
    };
    TaskEnv::build_with(node, alloc, task, &dirs, ports, FsIsolation::None)
}

#[allow(clippy::too_many_arguments)] // one call per service block; a struct would only rename them
fn plan_one(
    alloc: &Allocation,
    node: &Node,
    s: &api::Service,
    owner: &str,
    task: &str,
    tasks: Vec<String>,
    env: &TaskEnv,
    ports: &[AllocatedPort],
    ip: &str,
) -> Option<PlannedService> {
    if s.provider != api::SERVICE_PROVIDER_NOMAD {
        return None;
    }
    let name = env.interpolate(&s.name);
    let mut error = None;
    // "driver": the host address until the task's driver reports its own (see
    // `PlannedService::driver_port`).
    let by_driver = s.address_mode == "driver" && s.address.trim().is_empty();
    let mode = if by_driver { "host" } else { &s.address_mode };
    let (mut address, port) = match resolve_port(&s.port_label, mode, ports, ip) {
        Ok(a) => a,
        Err(e) => {
            error = Some(format!("service {name:?}: {e}"));
            (ip.to_string(), 0)
        }
    };
    if !s.address.trim().is_empty() {
        address = env.interpolate(s.address.trim());
    }
    let namespace = if !s.namespace.is_empty() {
        s.namespace.clone()
    } else if alloc.namespace.is_empty() {
        alloc
            .job
            .as_ref()
            .map(|j| j.ns().to_string())
            .unwrap_or_else(|| api::DEFAULT_NAMESPACE.into())
    } else {
        alloc.namespace.to_string()
    };
    let registration = ServiceRegistration {
        id: ServiceRegistration::make_id(&alloc.id, owner, &name, &s.port_label),
        service_name: name.clone(),
        namespace,
        node_id: node.id.clone(),
        datacenter: node.datacenter.clone(),
        job_id: alloc.job_id.to_string(),
        alloc_id: alloc.id.to_string(),
        tags: s.tags.iter().map(|t| env.interpolate(t)).collect(),
        address,
        port: i64::from(port),
        ..Default::default()
    };
    let checks = s
        .checks
        .iter()
        .map(|c| plan_check(alloc, c, s, &name, owner, task, env, ports, ip))
        .collect();
    Some(PlannedService {
        registration,
        canary_tags: s.canary_tags.iter().map(|t| env.interpolate(t)).collect(),
        tasks,
        checks,
        error,
        driver_port: by_driver
            .then(|| driver_port(&s.port_label, ports))
            .flatten(),
    })
}

#[allow(clippy::too_many_arguments)] // see plan_one
fn plan_check(
    alloc: &Allocation,
    c: &api::ServiceCheck,
    s: &api::Service,
    service: &str,
    owner: &str,
    task: &str,
    env: &TaskEnv,
    ports: &[AllocatedPort],
    ip: &str,
) -> PlannedCheck {
    let label = if c.port_label.is_empty() {
        &s.port_label
    } else {
        &c.port_label
    };
    // A check without its own mode follows the service's, except `driver`: the driver's
    // address is known only once the task runs, and Nomad's checks default to the host.
    let mode = if !c.address_mode.is_empty() {
        c.address_mode.as_str()
    } else if s.address_mode == "driver" {
        "host"
    } else {
        s.address_mode.as_str()
    };
    let probe = match (c.check_type.as_str(), resolve_port(label, mode, ports, ip)) {
        (_, Err(e)) => Probe::Unsupported(format!("nomad: {e}")),
        (_, Ok((_, 0))) => Probe::Unsupported(format!(
            "nomad: check {:?} has no port to probe (set port on the check or its service)",
            c.name
        )),
        ("http", Ok((host, port))) => Probe::Http {
            url: checks::http_url(&c.protocol, &host, port, &env.interpolate(&c.path)),
            method: c.method.clone(),
            headers: c
                .header
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|x| env.interpolate(x)).collect()))
                .collect(),
            body: c.body.clone(),
            tls_skip_verify: c.tls_skip_verify,
        },
        ("tcp", Ok((host, port))) => Probe::Tcp {
            addr: checks::join_host_port(&host, port),
        },
        (other, Ok(_)) => Probe::Unsupported(format!(
            "nomad: checks of type {other:?} are not supported by this agent (use http or tcp)"
        )),
    };
    let id = check_id(&[&alloc.id, &alloc.task_group, owner, service, &c.name, label]);
    let readiness = c.on_update == "ignore";
    let interval = nanos(c.interval, DEFAULT_INTERVAL).max(MIN_INTERVAL);
    PlannedCheck {
        pending: CheckQueryResult {
            id: id.clone(),
            check: c.name.clone(),
            group: alloc.name.to_string(),
            mode: if readiness {
                "readiness"
            } else {
                "healthiness"
            }
            .into(),
            output: "nomad: waiting to run".into(),
            service: service.to_string(),
            status: api::CHECK_STATUS_PENDING.into(),
            status_code: 0,
            task: task.to_string(),
            timestamp: 0,
        },
        id,
        probe,
        interval,
        timeout: nanos(c.timeout, DEFAULT_TIMEOUT),
        restart: c.check_restart.clone().filter(|r| r.limit > 0),
        readiness,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::{Service, ServiceCheck, Task};

    pub(crate) fn port(label: &str, value: u16, to: u16) -> AllocatedPort {
        AllocatedPort {
            label: label.into(),
            value,
            to,
            host_ip: "10.0.0.5".into(),
        }
    }

    pub(crate) fn alloc_with(group: TaskGroup) -> Allocation {
        let job = api::Job {
            id: "web".into(),
            name: "web".into(),
            task_groups: vec![group.clone()],
            ..Default::default()
        };
        Allocation {
            id: "a1".into(),
            name: "web.g[0]".into(),
            job_id: "web".into(),
            task_group: group.name.as_str().into(),
            job: Some(Arc::new(job)),
            ..Default::default()
        }
    }

    use std::sync::Arc;

    fn nomad_service(name: &str, port: &str) -> Service {
        Service {
            name: name.into(),
            port_label: port.into(),
            provider: "nomad".into(),
            ..Default::default()
        }
    }

    #[test]
    fn plan_resolves_ports_interpolates_names_and_skips_consul_services() {
        let mut svc = nomad_service("api-${NOMAD_GROUP_NAME}", "http");
        svc.tags = vec!["v-${NOMAD_ALLOC_INDEX}".into()];
        svc.checks = vec![ServiceCheck {
            name: "alive".into(),
            check_type: "http".into(),
            path: "/health".into(),
            interval: 1_000_000_000,
            ..Default::default()
        }];
        let group = TaskGroup {
            name: "g".into(),
            services: vec![
                svc,
                Service {
                    name: "elsewhere".into(),
                    provider: "consul".into(),
                    ..Default::default()
                },
            ],
            tasks: vec![Task {
                name: "t".into(),
                services: vec![nomad_service("raw", "9090")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let alloc = alloc_with(group.clone());
        let node = Node {
            id: "n1".into(),
            datacenter: "dc1".into(),
            ..Default::default()
        };
        let p = plan(&alloc, &group, &node, &[port("http", 23456, 0)]);
        assert_eq!(p.len(), 2);
        let r = &p[0].registration;
        assert_eq!(r.service_name, "api-g");
        assert_eq!(r.tags, vec!["v-0".to_string()]);
        assert_eq!((r.address.as_str(), r.port), ("10.0.0.5", 23456));
        assert_eq!(r.id, "_nomad-task-a1-group-g-api-g-http");
        assert_eq!(p[0].tasks, vec!["t".to_string()]);
        assert_eq!(
            p[0].checks[0].probe,
            Probe::Http {
                url: "http://10.0.0.5:23456/health".into(),
                method: String::new(),
                headers: vec![],
                body: String::new(),
                tls_skip_verify: false,
            }
        );
        assert_eq!(p[0].checks[0].id.len(), 32);
        assert_eq!(p[0].checks[0].pending.group, "web.g[0]");
        assert_eq!(p[1].registration.id, "_nomad-task-a1-t-raw-9090");
        assert_eq!(p[1].registration.port, 9090);
        assert_eq!(p[1].registration.address, "10.0.0.5");
    }

    #[test]
    fn an_unknown_port_label_is_an_error_not_a_panic() {
        assert!(resolve_port("nope", "auto", &[], "1.2.3.4").is_err());
        assert!(resolve_port("0", "auto", &[], "1.2.3.4").is_err());
        assert_eq!(
            resolve_port("db", "alloc", &[port("db", 25000, 5432)], "x").unwrap(),
            ("10.0.0.5".to_string(), 5432)
        );
        assert_eq!(
            resolve_port("db", "host", &[port("db", 25000, 5432)], "x").unwrap(),
            ("10.0.0.5".to_string(), 25000)
        );
    }

    #[test]
    fn canary_tags_replace_tags_only_for_a_canary_that_has_them() {
        let mut p = PlannedService {
            registration: ServiceRegistration {
                tags: vec!["live".into()],
                ..Default::default()
            },
            canary_tags: vec!["canary".into()],
            tasks: vec![],
            checks: vec![],
            error: None,
            driver_port: None,
        };
        assert_eq!(p.registration(true).tags, vec!["canary".to_string()]);
        assert_eq!(p.registration(false).tags, vec!["live".to_string()]);
        p.canary_tags.clear();
        assert_eq!(p.registration(true).tags, vec!["live".to_string()]);
    }

    #[test]
    fn driver_address_mode_advertises_the_drivers_ip_and_the_to_port_or_stays_on_the_host() {
        let mut svc = nomad_service("web", "http");
        svc.address_mode = "driver".into();
        svc.checks = vec![ServiceCheck {
            name: "alive".into(),
            check_type: "tcp".into(),
            interval: 1_000_000_000,
            ..Default::default()
        }];
        let mut numeric = nomad_service("num", "8443");
        numeric.address_mode = "driver".into();
        let mut fixed = nomad_service("fixed", "http");
        fixed.address_mode = "driver".into();
        fixed.address = "192.0.2.1".into();
        let group = TaskGroup {
            name: "g".into(),
            tasks: vec![Task {
                name: "t".into(),
                services: vec![svc, numeric, fixed, nomad_service("host", "http")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let alloc = alloc_with(group.clone());
        let node = Node::default();
        let p = plan(&alloc, &group, &node, &[port("http", 23456, 8080)]);
        let at = |i: usize, ip: Option<&str>| {
            let r = p[i].registration_at(false, ip);
            (r.address, r.port)
        };
        // With the container's IP: that IP and the port inside the container.
        assert_eq!(at(0, Some("172.17.0.3")), ("172.17.0.3".into(), 8080));
        assert_eq!(at(1, Some("172.17.0.3")), ("172.17.0.3".into(), 8443));
        // No driver network (raw_exec, exec; or not started yet): the host's.
        assert_eq!(at(0, None), ("10.0.0.5".into(), 23456));
        assert_eq!(at(0, Some("")), ("10.0.0.5".into(), 23456));
        // An explicit address wins; other modes never take the driver's IP.
        assert_eq!(at(2, Some("172.17.0.3")), ("192.0.2.1".into(), 8080));
        assert_eq!(at(3, Some("172.17.0.3")), ("10.0.0.5".into(), 23456));
        // Its check, without a mode of its own, probes the host port.
        assert_eq!(
            p[0].checks[0].probe,
            Probe::Tcp {
                addr: "10.0.0.5:23456".into()
            }
        );
        assert_eq!(driver_port("http", &[port("http", 23456, 0)]), Some(23456));
        assert_eq!(driver_port("", &[]), None);
    }

    #[test]
    fn check_ids_are_stable_and_distinct() {
        assert_eq!(check_id(&["a", "b"]), check_id(&["a", "b"]));
        assert_ne!(check_id(&["ab", ""]), check_id(&["a", "b"]));
    }
}
