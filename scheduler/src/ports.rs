//! Host ports for a new allocation: the one place that turns a group's `network` blocks
//! into the allocation's `AllocatedResources`.
//!
//! Static (`reserved_ports`) ports keep their value. Each dynamic port gets a host port
//! from [`DYNAMIC_PORTS`] that no live allocation on the node holds (the node's
//! [`NodeUsage::ports`]: static and assigned dynamic ports of its allocations and of this
//! plan's placements), that the group does not reserve statically and that no other port
//! of the same allocation got. The pick starts at a point drawn from the evaluation's
//! seeded RNG and walks the range, so the same seed gives the same ports, and two workers
//! planning for the same node from one snapshot rarely collide (when they do, the plan
//! applier's [`crate::usage::check_node_plan`] refuses the second plan).
//!
//! `to = -1` means "the same as the host port", as in Nomad.

use crate::usage::{Exhausted, NodeUsage};
use api::{
    AllocatedCpuResources, AllocatedMemoryResources, AllocatedPortMapping, AllocatedResources,
    AllocatedSharedResources, AllocatedTaskResources, NetworkResource, Node, TaskGroup,
};
use rand::Rng;
use std::ops::RangeInclusive;

/// Where dynamic host ports come from: Nomad's default range.
pub const DYNAMIC_PORTS: RangeInclusive<i64> =
    (api::DYNAMIC_PORT_MIN as i64)..=(api::DYNAMIC_PORT_MAX as i64);

/// `AllocMetric::dimension_exhausted` of a node with too few free dynamic ports (Nomad's
/// words).
pub const DIMENSION_NO_DYNAMIC_PORT: &str = "network: dynamic port selection failed";

/// How many ports [`DYNAMIC_PORTS`] holds.
pub const fn dynamic_range_size() -> i64 {
    *DYNAMIC_PORTS.end() - *DYNAMIC_PORTS.start() + 1
}

/// The address the node's ports are reachable on (what the agent fingerprinted).
pub fn host_ip(node: &Node) -> &str {
    node.attributes
        .get("unique.network.ip-address")
        .map(String::as_str)
        .filter(|ip| !ip.is_empty())
        .unwrap_or("127.0.0.1")
}

/// The port inside the task's network namespace: `-1` is the host port itself, anything
/// else not a port number is "none" (0: the task uses the host port).
fn mapped_to(to: i64, value: i64) -> i64 {
    match to {
        -1 => value,
        t if (1..=65535).contains(&t) => t,
        _ => 0,
    }
}

/// What a new allocation of `group` gets on `node`, which holds `usage`: per task CPU
/// and memory, the group's disk, networks and ports, every dynamic port assigned. Fails
/// only when the dynamic range has too few free ports, which [`crate::usage::check_fit`]
/// has already ruled out for a node it accepted.
pub fn allocate(
    group: &TaskGroup,
    node: &Node,
    usage: &NodeUsage,
    rng: &mut impl Rng,
) -> Result<AllocatedResources, Exhausted> {
    let ip = host_ip(node);
    // Host ports this allocation holds so far: its static ones first, so no dynamic port
    // lands on one of them.
    let mut taken: Vec<i64> = crate::usage::group_reserved_ports(group);
    let mut pick = |taken: &mut Vec<i64>| -> Result<i64, Exhausted> {
        let port = pick_free(usage, taken, rng).ok_or_else(|| Exhausted::NoDynamicPort {
            asked: crate::usage::Ask::for_group(group).unassigned_dynamic,
            free: (usage.free_dynamic_ports() - in_range(taken)).max(0),
        })?;
        taken.push(port);
        Ok(port)
    };

    let mut shared = AllocatedSharedResources {
        disk_mb: group.ephemeral_disk.as_ref().map_or(0, |d| d.size_mb),
        ..Default::default()
    };
    for network in &group.networks {
        let assigned = assign_network(network, ip, &mut taken, &mut pick)?;
        let mappings = assigned
            .reserved_ports
            .iter()
            .chain(&assigned.dynamic_ports)
            .map(|p| AllocatedPortMapping {
                label: p.label.clone(),
                value: p.value,
                to: p.to,
                host_ip: assigned.ip.clone(),
            });
        shared.ports.extend(mappings);
        shared.networks.push(assigned);
    }

    let mut out = AllocatedResources {
        shared,
        ..Default::default()
    };
    for task in &group.tasks {
        let r = task.resources.clone().unwrap_or_default();
        let mut networks = Vec::with_capacity(r.networks.len());
        for network in &r.networks {
            networks.push(assign_network(network, ip, &mut taken, &mut pick)?);
        }
        out.tasks.insert(
            task.name.clone(),
            AllocatedTaskResources {
                cpu: AllocatedCpuResources {
                    cpu_shares: r.cpu,
                    reserved_cores: Vec::new(),
                },
                memory: AllocatedMemoryResources {
                    memory_mb: r.memory_mb,
                    memory_max_mb: r.memory_max_mb,
                },
                networks,
            },
        );
        if task.lifecycle.is_some() {
            out.task_lifecycles
                .insert(task.name.clone(), task.lifecycle.clone());
        }
    }
    Ok(out)
}

/// One network block with its IP set and every port's host port decided.
fn assign_network(
    network: &NetworkResource,
    ip: &str,
    taken: &mut Vec<i64>,
    pick: &mut impl FnMut(&mut Vec<i64>) -> Result<i64, Exhausted>,
) -> Result<NetworkResource, Exhausted> {
    let mut assigned = network.clone();
    if assigned.ip.is_empty() {
        assigned.ip = ip.to_string();
    }
    for p in &mut assigned.reserved_ports {
        p.to = mapped_to(p.to, p.value);
    }
    for p in &mut assigned.dynamic_ports {
        p.value = pick(taken)?;
        p.to = mapped_to(p.to, p.value);
    }
    Ok(assigned)
}

fn in_range(ports: &[i64]) -> i64 {
    ports.iter().filter(|p| DYNAMIC_PORTS.contains(p)).count() as i64
}

/// A port of the dynamic range that neither the node nor `taken` holds, walking the range
/// from a seeded random start.
fn pick_free(usage: &NodeUsage, taken: &[i64], rng: &mut impl Rng) -> Option<i64> {
    let span = dynamic_range_size();
    if usage.free_dynamic_ports() - in_range(taken) <= 0 {
        return None;
    }
    let start = rng.gen_range(0..span);
    (0..span)
        .map(|i| DYNAMIC_PORTS.start() + (start + i) % span)
        .find(|p| !usage.ports.contains_key(p) && !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock;
    use crate::usage::{check_fit, Ask};
    use api::Port;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn group_with_ports(fixed: &[(&str, i64)], dynamic: &[&str]) -> TaskGroup {
        let mut job = mock::job("web", api::JOB_TYPE_SERVICE);
        job.task_groups[0].networks = vec![NetworkResource {
            reserved_ports: fixed
                .iter()
                .map(|(label, value)| Port {
                    label: label.to_string(),
                    value: *value,
                    ..Default::default()
                })
                .collect(),
            dynamic_ports: dynamic
                .iter()
                .map(|label| Port {
                    label: label.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }];
        job.task_groups.remove(0)
    }

    fn values(r: &AllocatedResources) -> Vec<i64> {
        r.shared.ports.iter().map(|p| p.value).collect()
    }

    #[test]
    fn assignment_is_deterministic_per_seed_and_varies_across_seeds() {
        let group = group_with_ports(&[], &["http", "grpc"]);
        let node = mock::node("n1");
        let usage = NodeUsage::default();
        let run = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            values(&allocate(&group, &node, &usage, &mut rng).unwrap())
        };
        assert_eq!(run(7), run(7));
        let distinct: std::collections::BTreeSet<Vec<i64>> = (0..10).map(run).collect();
        assert!(distinct.len() > 1, "the seed decides the ports");
        for seed in 0..10 {
            let ports = run(seed);
            assert!(ports.iter().all(|p| DYNAMIC_PORTS.contains(p)), "{ports:?}");
            assert_ne!(ports[0], ports[1]);
        }
    }

    #[test]
    fn static_ports_keep_their_value_and_dynamic_ones_avoid_everything_held() {
        // Everything in the range is held but three ports; the group reserves one of
        // them statically, so its two dynamic ports get exactly the other two.
        let (a, b, c) = (20_100, 25_000, 31_999);
        let mut usage = NodeUsage::default();
        for p in DYNAMIC_PORTS.filter(|p| ![a, b, c].contains(p)) {
            usage.hold_port(p);
        }
        assert_eq!(usage.free_dynamic_ports(), 3);
        let mut group = group_with_ports(&[("admin", b)], &["http", "grpc"]);
        group.networks[0].dynamic_ports[0].to = -1;
        let mut node = mock::node("n1");
        node.attributes
            .insert("unique.network.ip-address".into(), "10.0.0.9".into());
        for seed in 0..5 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let r = allocate(&group, &node, &usage, &mut rng).unwrap();
            let admin = r.port("admin").unwrap();
            assert_eq!((admin.value, admin.host_ip.as_str()), (b, "10.0.0.9"));
            let http = r.port("http").unwrap();
            let grpc = r.port("grpc").unwrap();
            let mut got = [http.value, grpc.value];
            got.sort();
            assert_eq!(got, [a, c], "seed {seed}");
            assert_eq!(http.to, http.value, "to = -1 is the host port");
            assert_eq!(grpc.to, 0);
            assert_eq!(r.shared.networks[0].ip, "10.0.0.9");
            assert_eq!(r.shared.networks[0].dynamic_ports[0].value, http.value);
            // What it holds fits beside the node's usage, and the fit check agrees.
            let mut alloc = api::Allocation {
                allocated_resources: Some(r),
                ..Default::default()
            };
            alloc.resources = Some(std::sync::Arc::new(group.combined_resources()));
            assert_eq!(check_fit(&node, &usage, &Ask::of_alloc(&alloc)), Ok(()));
        }
    }

    #[test]
    fn a_full_range_is_dynamic_port_selection_failed() {
        let mut usage = NodeUsage::default();
        for p in DYNAMIC_PORTS.skip(1) {
            usage.hold_port(p);
        }
        let node = mock::node("n1");
        let group = group_with_ports(&[], &["http", "grpc"]);
        let ask = Ask::for_group(&group);
        let err = check_fit(&node, &usage, &ask).unwrap_err();
        assert_eq!(err.dimension(), "network: dynamic port selection failed");
        assert_eq!(err, Exhausted::NoDynamicPort { asked: 2, free: 1 });
        assert!(err.to_string().contains("20000-32000"), "{err}");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let err = allocate(&group, &node, &usage, &mut rng).unwrap_err();
        assert_eq!(err.dimension(), DIMENSION_NO_DYNAMIC_PORT);
        // One dynamic port still fits.
        let one = group_with_ports(&[], &["http"]);
        assert_eq!(check_fit(&node, &usage, &Ask::for_group(&one)), Ok(()));
        let r = allocate(&one, &node, &usage, &mut rng).unwrap();
        assert_eq!(values(&r), vec![*DYNAMIC_PORTS.start()]);
    }

    #[test]
    fn tasks_get_their_cpu_and_memory_and_the_group_its_disk() {
        let group = group_with_ports(&[], &[]);
        let node = mock::node("n1");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let r = allocate(&group, &node, &NodeUsage::default(), &mut rng).unwrap();
        let task = &group.tasks[0];
        let want = task.resources.as_ref().unwrap();
        assert_eq!(r.tasks[&task.name].cpu.cpu_shares, want.cpu);
        assert_eq!(r.tasks[&task.name].memory.memory_mb, want.memory_mb);
        assert_eq!(
            r.shared.disk_mb,
            group.ephemeral_disk.as_ref().map_or(0, |d| d.size_mb)
        );
        assert!(r.shared.ports.is_empty());
    }
}
