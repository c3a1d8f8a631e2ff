//! Host ports for an allocation's `network` block, and the `NOMAD_*` variables that name
//! them.
//!
//! The scheduler decides host ports: an allocation carries them in
//! `AllocatedResources.Shared.Ports`, and [`from_allocated`] turns them into the
//! [`AllocatedPort`]s the tasks get, as they are (the servers' plan applier has made sure
//! no other allocation on this node holds them).
//!
//! [`PortAllocator`] is only the fallback for an allocation placed by servers that did
//! not assign ports (no `AllocatedResources`): each dynamic port gets a host port from
//! [`DYNAMIC_PORT_RANGE`] that nothing on the host listens on (TCP or UDP) and that no
//! other allocation of this agent holds; static ports keep their value. Ports the servers
//! assigned are reserved in it too, so the fallback never hands them out.
//!
//! Either way the ports are kept in the allocation's local state, so a restarted agent
//! gives its tasks the same ports.

use api::NetworkResource;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

/// Where dynamic host ports come from: the scheduler's range (Nomad's default).
pub const DYNAMIC_PORT_RANGE: RangeInclusive<u16> = api::DYNAMIC_PORT_MIN..=api::DYNAMIC_PORT_MAX;

/// One port of the group's network, with its host port decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPort {
    pub label: String,
    /// The port on the host.
    pub value: u16,
    /// The port inside the task's network namespace (a container port); 0 when the task
    /// uses the host port itself.
    pub to: u16,
    /// The host address the port is reachable on.
    #[serde(rename = "HostIP")]
    pub host_ip: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PortError {
    #[error("port label {0:?} is declared twice in the group's network block")]
    DuplicateLabel(String),
    #[error("static port {port} ({label:?}) is not a valid port number")]
    InvalidStatic { label: String, port: i64 },
    #[error("no free dynamic port left in {start}-{end} for {label:?}", start = DYNAMIC_PORT_RANGE.start(), end = DYNAMIC_PORT_RANGE.end())]
    Exhausted { label: String },
    #[error("the servers assigned port {port} to {label:?}, which is not a valid port number")]
    InvalidAssigned { label: String, port: i64 },
}

/// The port inside the task's network namespace for a `to` of a job or of the servers'
/// assignment: `-1` is the host port itself; anything else not a port number means the
/// task uses the host port (0).
fn to_of(to: i64, value: u16) -> u16 {
    match to {
        -1 => value,
        t if (1..=65535).contains(&t) => t as u16,
        _ => 0,
    }
}

/// The ports the servers assigned to an allocation (`AllocatedResources.Shared.Ports`),
/// checked: every host port a valid port number and every label once. A mapping without
/// a host IP gets `host_ip`.
pub fn from_allocated(
    ports: &[api::AllocatedPortMapping],
    host_ip: &str,
) -> Result<Vec<AllocatedPort>, PortError> {
    let mut labels = BTreeSet::new();
    ports
        .iter()
        .map(|p| {
            if !labels.insert(p.label.as_str()) {
                return Err(PortError::DuplicateLabel(p.label.clone()));
            }
            let value = u16::try_from(p.value)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| PortError::InvalidAssigned {
                    label: p.label.clone(),
                    port: p.value,
                })?;
            Ok(AllocatedPort {
                label: p.label.clone(),
                value,
                to: to_of(p.to, value),
                host_ip: if p.host_ip.is_empty() {
                    host_ip.to_string()
                } else {
                    p.host_ip.clone()
                },
            })
        })
        .collect()
}

/// Hands out dynamic host ports; shared by every alloc runner of an agent.
#[derive(Debug, Clone, Default)]
pub struct PortAllocator {
    taken: Arc<Mutex<BTreeSet<u16>>>,
}

/// Can something bind `port` on every address, over TCP and UDP?
fn free_on_host(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()
        && std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

/// Where to start scanning the range, so agents on one machine do not all race for the
/// same first port.
fn scan_start() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let span = (DYNAMIC_PORT_RANGE.end() - DYNAMIC_PORT_RANGE.start()) as u32 + 1;
    DYNAMIC_PORT_RANGE.start() + ((nanos ^ std::process::id().rotate_left(13)) % span) as u16
}

impl PortAllocator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides the host port of every port of `networks`. `to = -1` means "the same as
    /// the host port", as in Nomad.
    pub fn assign(
        &self,
        networks: &[NetworkResource],
        host_ip: &str,
    ) -> Result<Vec<AllocatedPort>, PortError> {
        let mut taken = self.taken.lock().expect("port allocator lock");
        let mut out: Vec<AllocatedPort> = Vec::new();
        let mut mine = BTreeSet::new();
        let mut labels = BTreeSet::new();
        for net in networks {
            let ip = if net.ip.is_empty() { host_ip } else { &net.ip };
            for p in &net.reserved_ports {
                if !labels.insert(p.label.clone()) {
                    return Err(PortError::DuplicateLabel(p.label.clone()));
                }
                let value = u16::try_from(p.value)
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| PortError::InvalidStatic {
                        label: p.label.clone(),
                        port: p.value,
                    })?;
                out.push(AllocatedPort {
                    label: p.label.clone(),
                    value,
                    to: to_of(p.to, value),
                    host_ip: ip.to_string(),
                });
            }
            for p in &net.dynamic_ports {
                if !labels.insert(p.label.clone()) {
                    return Err(PortError::DuplicateLabel(p.label.clone()));
                }
                // A port the servers already chose is kept as it is.
                let value = match u16::try_from(p.value).ok().filter(|v| *v > 0) {
                    Some(v) => v,
                    None => {
                        let start = scan_start();
                        let span = DYNAMIC_PORT_RANGE.end() - DYNAMIC_PORT_RANGE.start() + 1;
                        (0..span)
                            .map(|i| {
                                DYNAMIC_PORT_RANGE.start()
                                    + (start - DYNAMIC_PORT_RANGE.start() + i) % span
                            })
                            .find(|c| !taken.contains(c) && !mine.contains(c) && free_on_host(*c))
                            .ok_or_else(|| PortError::Exhausted {
                                label: p.label.clone(),
                            })?
                    }
                };
                mine.insert(value);
                out.push(AllocatedPort {
                    label: p.label.clone(),
                    value,
                    to: to_of(p.to, value),
                    host_ip: ip.to_string(),
                });
            }
        }
        taken.extend(mine);
        Ok(out)
    }

    /// Marks ports restored from local state as taken.
    pub fn reserve(&self, ports: &[AllocatedPort]) {
        let mut taken = self.taken.lock().expect("port allocator lock");
        taken.extend(ports.iter().map(|p| p.value));
    }

    /// Gives ports back when their allocation is gone.
    pub fn release(&self, ports: &[AllocatedPort]) {
        let mut taken = self.taken.lock().expect("port allocator lock");
        for p in ports {
            taken.remove(&p.value);
        }
    }
}

fn env_label(label: &str) -> String {
    label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// `NOMAD_PORT_<label>` (the port the task listens on: `to` when mapped, else the host
/// port), `NOMAD_HOST_PORT_<label>`, `NOMAD_IP_<label>` and `NOMAD_ADDR_<label>` (host
/// IP and host port), as Nomad sets them.
pub fn env_vars(ports: &[AllocatedPort]) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for p in ports {
        let l = env_label(&p.label);
        let task_port = if p.to > 0 { p.to } else { p.value };
        env.insert(format!("NOMAD_PORT_{l}"), task_port.to_string());
        env.insert(format!("NOMAD_HOST_PORT_{l}"), p.value.to_string());
        env.insert(format!("NOMAD_IP_{l}"), p.host_ip.clone());
        let addr = match p.host_ip.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{}]:{}", p.host_ip, p.value),
            _ => format!("{}:{}", p.host_ip, p.value),
        };
        env.insert(format!("NOMAD_ADDR_{l}"), addr);
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Port;

    fn net(reserved: Vec<(&str, i64)>, dynamic: Vec<(&str, i64)>) -> NetworkResource {
        let port = |(label, v): (&str, i64), to| Port {
            label: label.into(),
            value: v,
            to,
            ..Default::default()
        };
        NetworkResource {
            reserved_ports: reserved.into_iter().map(|p| port(p, 0)).collect(),
            dynamic_ports: dynamic.into_iter().map(|p| port(p, 8080)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn dynamic_ports_are_free_distinct_and_in_range_static_ports_keep_their_value() {
        let alloc = PortAllocator::new();
        let a = alloc
            .assign(
                &[net(vec![("admin", 9999)], vec![("http", 0), ("grpc", 0)])],
                "10.0.0.5",
            )
            .unwrap();
        assert_eq!(a[0].label, "admin");
        assert_eq!(a[0].value, 9999);
        assert_eq!(a[0].to, 0);
        let (http, grpc) = (&a[1], &a[2]);
        assert!(DYNAMIC_PORT_RANGE.contains(&http.value));
        assert!(DYNAMIC_PORT_RANGE.contains(&grpc.value));
        assert_ne!(http.value, grpc.value);
        assert_eq!(http.to, 8080);
        assert_eq!(http.host_ip, "10.0.0.5");
        // A second allocation never gets the same ports while the first holds them.
        let b = alloc
            .assign(&[net(vec![], vec![("http", 0)])], "10.0.0.5")
            .unwrap();
        assert!(b[0].value != http.value && b[0].value != grpc.value);
        alloc.release(&a);
        alloc.release(&b);
        assert!(alloc.taken.lock().unwrap().is_empty());
    }

    #[test]
    fn a_port_in_use_on_the_host_is_skipped() {
        let alloc = PortAllocator::new();
        let first = alloc
            .assign(&[net(vec![], vec![("a", 0)])], "127.0.0.1")
            .unwrap();
        alloc.release(&first);
        // Hold that port on the host: the allocator must not hand it out again.
        let _busy = std::net::TcpListener::bind(("0.0.0.0", first[0].value)).unwrap();
        for _ in 0..20 {
            let again = alloc
                .assign(&[net(vec![], vec![("a", 0)])], "127.0.0.1")
                .unwrap();
            assert_ne!(again[0].value, first[0].value);
            alloc.release(&again);
        }
    }

    #[test]
    fn duplicate_labels_and_bad_static_ports_are_errors() {
        let alloc = PortAllocator::new();
        let err = alloc
            .assign(&[net(vec![("x", 80)], vec![("x", 0)])], "127.0.0.1")
            .unwrap_err();
        assert_eq!(err, PortError::DuplicateLabel("x".into()));
        let err = alloc
            .assign(&[net(vec![("x", 70000)], vec![])], "127.0.0.1")
            .unwrap_err();
        assert!(err.to_string().contains("70000"), "{err}");
    }

    #[test]
    fn ports_the_servers_assigned_are_taken_as_they_are_and_checked() {
        let mapping = |label: &str, value: i64, to: i64, ip: &str| api::AllocatedPortMapping {
            label: label.into(),
            value,
            to,
            host_ip: ip.into(),
        };
        let ports = from_allocated(
            &[
                mapping("http", 23456, 0, "10.0.0.5"),
                mapping("grpc", 24000, -1, ""),
                mapping("admin", 9999, 8080, "10.0.0.5"),
            ],
            "127.0.0.1",
        )
        .unwrap();
        assert_eq!(ports[0].value, 23456);
        assert_eq!(ports[0].to, 0);
        assert_eq!(
            (ports[1].to, ports[1].host_ip.as_str()),
            (24000, "127.0.0.1")
        );
        assert_eq!(ports[2].to, 8080);
        let env = env_vars(&ports);
        assert_eq!(env["NOMAD_PORT_http"], "23456");
        assert_eq!(env["NOMAD_HOST_PORT_http"], "23456");
        assert_eq!(env["NOMAD_ADDR_http"], "10.0.0.5:23456");

        let err = from_allocated(&[mapping("x", 70000, 0, "")], "127.0.0.1").unwrap_err();
        assert!(err.to_string().contains("70000"), "{err}");
        let err =
            from_allocated(&[mapping("x", 1, 0, ""), mapping("x", 2, 0, "")], "").unwrap_err();
        assert_eq!(err, PortError::DuplicateLabel("x".into()));
    }

    #[test]
    fn env_names_the_task_port_and_the_host_address() {
        let env = env_vars(&[
            AllocatedPort {
                label: "http".into(),
                value: 23456,
                to: 8080,
                host_ip: "10.1.2.3".into(),
            },
            AllocatedPort {
                label: "db-main".into(),
                value: 5432,
                to: 0,
                host_ip: "10.1.2.3".into(),
            },
        ]);
        assert_eq!(env["NOMAD_PORT_http"], "8080");
        assert_eq!(env["NOMAD_HOST_PORT_http"], "23456");
        assert_eq!(env["NOMAD_ADDR_http"], "10.1.2.3:23456");
        assert_eq!(env["NOMAD_IP_http"], "10.1.2.3");
        assert_eq!(env["NOMAD_PORT_db_main"], "5432");
        assert_eq!(env["NOMAD_ADDR_db_main"], "10.1.2.3:5432");
    }
}
