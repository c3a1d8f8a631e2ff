//! `drover node status`: the node list, or one node with its resources and allocations
//! (with `-stats`, also the host's measured CPU and memory use, from its client agent).

use crate::cli::alloc::{alloc_table, AllocTableKind};
use crate::cli::format::{api_error, id, kv, now_nanos, or_none, table};
use crate::cli::lookup::{self, Kind};
use api::{Allocation, AllocationListStub, Client, Node, NodeListStub, QueryOptions};
use client_agent::http::ClientApi;
use client_agent::stats::{mhz_per_core, HostStats};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// Also show the host's measured CPU and memory use (asked of the node's client
    /// agent) next to its total and what allocations reserved.
    #[arg(long)]
    pub stats: bool,
    /// A node ID or a prefix of one; without it, list all nodes.
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
}

/// Nodes whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<NodeListStub>> {
    lookup::matching(
        Kind::Node,
        prefix,
        |o| async move { client.nodes(&o).await },
        |n| &n.id,
    )
    .await
}

fn bool_word(b: bool) -> String {
    b.to_string()
}

pub fn node_list_table(nodes: &[NodeListStub], verbose: bool) -> String {
    let mut header = vec![
        "ID",
        "Node Pool",
        "DC",
        "Name",
        "Class",
        "Drain",
        "Eligibility",
        "Status",
    ];
    if verbose {
        header.extend(["Address", "Version"]);
    }
    let rows = nodes
        .iter()
        .map(|n| {
            let mut row = vec![
                id(&n.id, verbose).to_string(),
                n.node_pool.clone(),
                n.datacenter.clone(),
                n.name.clone(),
                or_none(&n.node_class),
                bool_word(n.drain),
                n.scheduling_eligibility.clone(),
                n.status.clone(),
            ];
            if verbose {
                row.extend([n.address.clone(), n.version.clone()]);
            }
            row
        })
        .collect();
    table(&header, rows)
}

pub async fn status(client: &Client, args: StatusArgs) -> anyhow::Result<i32> {
    let verbose = args.verbose;
    let Some(prefix) = args.node else {
        let (nodes, _) = client
            .nodes(&QueryOptions::default())
            .await
            .map_err(|e| api_error("querying nodes", e))?;
        if nodes.is_empty() {
            println!("No nodes registered");
        } else {
            println!("{}", node_list_table(&nodes, verbose));
        }
        return Ok(0);
    };
    let matches = matching(client, &prefix).await?;
    let table = |m: &[NodeListStub]| node_list_table(m, verbose);
    let Some(NodeListStub { id: node_id, .. }) =
        lookup::one_or_tell(Kind::Node, &prefix, matches, table)
    else {
        return Ok(1);
    };
    let node = match client.node(&node_id).await {
        Ok((n, _)) => n,
        Err(e) if e.is_not_found() => return Ok(lookup::not_found(Kind::Node, &prefix)),
        Err(e) => return Err(api_error("querying node", e)),
    };
    let (allocs, _) = client
        .node_allocations(&node_id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying node allocations", e))?;
    println!("{}", node_header(&node, verbose));
    let reserved = Reserved::of(&allocs);
    println!(
        "\nAllocated Resources\n{}",
        allocated_resources(&node, &reserved)
    );
    if args.stats {
        let api = ClientApi::new(client.address()).with_token(client.token());
        let path = format!("/v1/client/stats?node_id={}", api::url::encode(&node.id));
        match api.json("GET", &path, None).await {
            Ok(v) => {
                let host: HostStats = serde_json::from_value(v)
                    .map_err(|e| anyhow::anyhow!("Error reading host stats: {e}"))?;
                println!("\n{}", host_utilization(&node, &reserved, &host));
            }
            Err(e) => eprintln!("\nError reading host stats of node {}: {e}", node.id),
        }
    }
    let mut stubs: Vec<AllocationListStub> =
        allocs.iter().map(AllocationListStub::from_alloc).collect();
    stubs.sort_by_key(|a| std::cmp::Reverse(a.create_index));
    println!("\nAllocations");
    if stubs.is_empty() {
        println!("No allocations placed");
    } else {
        println!(
            "{}",
            alloc_table(&stubs, verbose, now_nanos(), AllocTableKind::Node)
        );
    }
    Ok(0)
}

fn node_header(n: &Node, verbose: bool) -> String {
    let drivers: Vec<&str> = n
        .drivers
        .iter()
        .filter(|(_, d)| d.detected && d.healthy)
        .map(|(name, _)| name.as_str())
        .collect();
    let mut pairs = vec![
        ("ID", id(&n.id, verbose).to_string()),
        ("Name", n.name.clone()),
        ("Node Pool", n.node_pool.clone()),
        ("Class", or_none(&n.node_class)),
        ("DC", n.datacenter.clone()),
        ("Drain", bool_word(n.drain)),
        ("Eligibility", n.scheduling_eligibility.clone()),
        ("Status", n.status.clone()),
    ];
    if !n.http_addr.is_empty() {
        pairs.push(("HTTP Addr", n.http_addr.clone()));
    }
    pairs.push(("Drivers", or_none(&drivers.join(","))));
    if verbose && !n.status_description.is_empty() {
        pairs.push(("Status Description", n.status_description.clone()));
    }
    kv(&pairs)
}

/// What a node's live allocations reserve: CPU in MHz, memory and disk in MiB.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Reserved {
    cpu: i64,
    mem: i64,
    disk: i64,
}

impl Reserved {
    fn of(allocs: &[Allocation]) -> Reserved {
        let mut sum = Reserved::default();
        for a in allocs.iter().filter(|a| !a.terminal()) {
            let r = a.resources.clone().or_else(|| {
                a.job
                    .as_ref()
                    .and_then(|j| j.task_group(&a.task_group))
                    .map(|g| std::sync::Arc::new(g.combined_resources()))
            });
            if let Some(r) = r {
                sum.cpu += r.cpu;
                sum.mem += r.memory_mb;
                sum.disk += r.disk_mb;
            }
        }
        sum
    }
}

/// What the node's live allocations reserve against what it can hand out.
fn allocated_resources(n: &Node, r: &Reserved) -> String {
    let (cpu_total, mem_total, disk_total) = n.allocatable();
    let Reserved { cpu, mem, disk } = *r;
    table(
        &["CPU", "Memory", "Disk"],
        vec![vec![
            format!("{cpu}/{cpu_total} MHz"),
            format!("{mem} MiB/{mem_total} MiB"),
            format!("{disk} MiB/{disk_total} MiB"),
        ]],
    )
}

/// Bytes as MiB below a GiB, else GiB with one decimal.
fn gib(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let b = bytes as f64;
    if b < 1024.0 * MIB {
        format!("{:.0} MiB", b / MIB)
    } else {
        format!("{:.1} GiB", b / (1024.0 * MIB))
    }
}

/// The host's measured use next to the node's total and what allocations reserved, as
/// Nomad's `Host Resource Utilization`, then per-CPU and memory detail like `-stats`.
/// Used CPU is the busy share of each core over the agent's sample window times the
/// node's MHz per core; used memory is MemTotal - MemAvailable.
fn host_utilization(n: &Node, r: &Reserved, h: &HostStats) -> String {
    let cpu_total = n.node_resources.cpu.cpu_shares;
    let cpu_used = if h.cpu_ticks_consumed > 0.0 {
        h.cpu_ticks_consumed
    } else {
        let mhz = mhz_per_core(Some(n));
        h.cpu.iter().map(|c| c.total / 100.0 * mhz).sum()
    };
    let mib = 1024 * 1024;
    let mem = &h.memory;
    let disk = &h.alloc_dir_stats;
    let summary = table(
        &["Resource", "Used", "Reserved", "Total"],
        vec![
            vec![
                "CPU".into(),
                format!("{cpu_used:.0} MHz"),
                format!("{} MHz", r.cpu),
                format!("{cpu_total} MHz"),
            ],
            vec![
                "Memory".into(),
                gib(mem.used),
                gib(r.mem.max(0) as u64 * mib),
                gib(mem.total),
            ],
            vec![
                "Disk (alloc dir)".into(),
                gib(disk.used),
                gib(r.disk.max(0) as u64 * mib),
                gib(disk.size),
            ],
        ],
    );
    let cpus = table(
        &["CPU", "User", "System", "Idle", "Busy"],
        h.cpu
            .iter()
            .map(|c| {
                vec![
                    c.cpu.clone(),
                    format!("{:.1}%", c.user),
                    format!("{:.1}%", c.system),
                    format!("{:.1}%", c.idle),
                    format!("{:.1}%", c.total),
                ]
            })
            .collect(),
    );
    let memory = kv(&[
        ("Total", gib(mem.total)),
        ("Available", gib(mem.available)),
        ("Used", gib(mem.used)),
        ("Free", gib(mem.free)),
    ]);
    format!("Host Resource Utilization\n{summary}\n\nCPU Stats\n{cpus}\n\nMemory Stats\n{memory}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_list_has_nomads_columns() {
        let n = NodeListStub {
            id: "43c0b14e-1111-2222-3333-444444444444".into(),
            name: "n1".into(),
            datacenter: "dc1".into(),
            node_pool: "default".into(),
            scheduling_eligibility: "eligible".into(),
            status: "ready".into(),
            ..Default::default()
        };
        let out = node_list_table(&[n], false);
        let mut lines = out.lines();
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            [
                "ID",
                "Node",
                "Pool",
                "DC",
                "Name",
                "Class",
                "Drain",
                "Eligibility",
                "Status"
            ]
        );
        assert_eq!(
            lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
            ["43c0b14e", "default", "dc1", "n1", "<none>", "false", "eligible", "ready"]
        );
    }

    #[test]
    fn host_utilization_puts_used_next_to_reserved_and_total() {
        let mut n = Node::default();
        n.node_resources.cpu.cpu_shares = 4000;
        let h = HostStats {
            memory: client_agent::stats::HostMemoryStats {
                total: 8 * 1024 * 1024 * 1024,
                available: 6 * 1024 * 1024 * 1024,
                used: 2 * 1024 * 1024 * 1024,
                free: 1024 * 1024 * 1024,
            },
            cpu_ticks_consumed: 250.4,
            ..Default::default()
        };
        let r = Reserved {
            cpu: 500,
            mem: 300,
            disk: 0,
        };
        let out = host_utilization(&n, &r, &h);
        let cpu_row: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with("CPU "))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(cpu_row, ["CPU", "250", "MHz", "500", "MHz", "4000", "MHz"]);
        let mem_row: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with("Memory "))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(
            mem_row,
            ["Memory", "2.0", "GiB", "300", "MiB", "8.0", "GiB"]
        );
    }
}
