//! What an allocation was given on its node (`Allocation.AllocatedResources`), in Nomad's
//! shape: per task CPU and memory, and the group's shared disk, networks and host ports.
//!
//! The scheduler fills it when it places an allocation: every dynamic port gets a host
//! port from [`DYNAMIC_PORT_MIN`]..=[`DYNAMIC_PORT_MAX`], static ports keep their value.
//! The client agent runs the tasks on exactly these ports.

use crate::alloc::Allocation;
use crate::job::{Lifecycle, NetworkResource};
use serde::{Deserialize, Serialize};

/// The lowest host port the scheduler hands to a dynamic port (Nomad's default).
pub const DYNAMIC_PORT_MIN: u16 = 20000;
/// The highest host port the scheduler hands to a dynamic port (Nomad's default).
pub const DYNAMIC_PORT_MAX: u16 = 32000;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedResources {
    pub tasks: crate::TaskMap<AllocatedTaskResources>,
    /// The lifecycle of each task that has one (prestart, poststart, poststop hooks).
    #[serde(skip_serializing_if = "crate::TaskMap::is_empty")]
    pub task_lifecycles: crate::TaskMap<Option<Lifecycle>>,
    pub shared: AllocatedSharedResources,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedTaskResources {
    pub cpu: AllocatedCpuResources,
    pub memory: AllocatedMemoryResources,
    /// Task-level networks (deprecated in Nomad, still accepted), ports assigned.
    pub networks: Vec<NetworkResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedCpuResources {
    pub cpu_shares: i64,
    pub reserved_cores: Vec<u16>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedMemoryResources {
    #[serde(rename = "MemoryMB")]
    pub memory_mb: i64,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedSharedResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: i64,
    /// The group's networks with `IP` set and every dynamic port's `Value` assigned.
    pub networks: Vec<NetworkResource>,
    /// Every port of the group's networks, static and dynamic, with its host port.
    pub ports: Vec<AllocatedPortMapping>,
}

/// One port of the group's network and where it lives on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPortMapping {
    pub label: String,
    /// The port on the host.
    pub value: i64,
    /// The port inside the task's network namespace; 0 when the task uses the host port.
    pub to: i64,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
}

impl AllocatedResources {
    /// Every host port the allocation holds, with whether it is static (`true`) or was
    /// assigned to a dynamic port (`false`): the group's networks, the tasks' networks,
    /// and any port of `Shared.Ports` the networks do not name (counted as dynamic).
    pub fn host_ports(&self) -> impl Iterator<Item = (i64, bool)> + '_ {
        let task_networks = self.tasks.values().flat_map(|t| t.networks.iter());
        let in_networks = |value: i64| {
            self.shared.networks.iter().any(|n| {
                let mut all = n.reserved_ports.iter().chain(&n.dynamic_ports);
                all.any(|p| p.value == value)
            })
        };
        let unlisted = self
            .shared
            .ports
            .iter()
            .filter(move |p| !in_networks(p.value))
            .map(|p| (p.value, false));
        self.shared
            .networks
            .iter()
            .chain(task_networks)
            .flat_map(|n| {
                let fixed = n.reserved_ports.iter().map(|p| (p.value, true));
                let dynamic = n.dynamic_ports.iter().map(|p| (p.value, false));
                fixed.chain(dynamic)
            })
            .chain(unlisted)
            .filter(|(v, _)| *v > 0)
    }

    /// The port with this label, if the group's network declares it.
    pub fn port(&self, label: &str) -> Option<&AllocatedPortMapping> {
        self.shared.ports.iter().find(|p| p.label == label)
    }
}

impl Allocation {
    /// The group's ports as the scheduler assigned them; empty for an allocation placed
    /// before the servers assigned ports (its agent chose them).
    pub fn allocated_ports(&self) -> &[AllocatedPortMapping] {
        self.allocated_resources
            .as_ref()
            .map(|r| r.shared.ports.as_slice())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Port;

    #[test]
    fn serialises_in_nomads_shape_and_reads_partial_json() {
        let resources = AllocatedResources {
            tasks: crate::TaskMap::from_iter([(
                "web".to_string(),
                AllocatedTaskResources {
                    cpu: AllocatedCpuResources {
                        cpu_shares: 500,
                        reserved_cores: vec![],
                    },
                    memory: AllocatedMemoryResources {
                        memory_mb: 256,
                        memory_max_mb: 0,
                    },
                    networks: vec![],
                },
            )]),
            task_lifecycles: crate::TaskMap::new(),
            shared: AllocatedSharedResources {
                disk_mb: 300,
                networks: vec![NetworkResource {
                    ip: "10.0.0.1".into(),
                    dynamic_ports: vec![Port {
                        label: "http".into(),
                        value: 23456,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ports: vec![AllocatedPortMapping {
                    label: "http".into(),
                    value: 23456,
                    to: 0,
                    host_ip: "10.0.0.1".into(),
                }],
            },
        };
        let json = serde_json::to_value(&resources).unwrap();
        assert_eq!(json["Tasks"]["web"]["Cpu"]["CpuShares"], 500);
        assert_eq!(json["Tasks"]["web"]["Memory"]["MemoryMB"], 256);
        assert_eq!(json["Shared"]["DiskMB"], 300);
        assert_eq!(json["Shared"]["Networks"][0]["IP"], "10.0.0.1");
        assert_eq!(
            json["Shared"]["Networks"][0]["DynamicPorts"][0]["Value"],
            23456
        );
        assert_eq!(json["Shared"]["Ports"][0]["HostIP"], "10.0.0.1");
        assert_eq!(json["Shared"]["Ports"][0]["Label"], "http");
        let back: AllocatedResources = serde_json::from_value(json).unwrap();
        assert_eq!(back, resources);
        assert_eq!(back.port("http").map(|p| p.value), Some(23456));
        assert_eq!(back.host_ports().collect::<Vec<_>>(), vec![(23456, false)]);

        // Ports without networks (a client that sent only `Ports`) still count.
        let only_ports = AllocatedResources {
            shared: AllocatedSharedResources {
                ports: back.shared.ports.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            only_ports.host_ports().collect::<Vec<_>>(),
            vec![(23456, false)]
        );

        let partial: Allocation = serde_json::from_str(
            r#"{"AllocatedResources": {"Shared": {"Ports": [{"Value": 9}]}}}"#,
        )
        .unwrap();
        assert_eq!(partial.allocated_ports()[0].value, 9);
        assert!(Allocation::default().allocated_ports().is_empty());
    }
}
