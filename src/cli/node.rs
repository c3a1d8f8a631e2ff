//! `drover node status`: the node list, or one node with its resources and allocations.

use crate::cli::alloc::{alloc_table, AllocTableKind};
use crate::cli::format::{api_error, id, kv, now_nanos, or_none, table};
use crate::cli::job::narrow;
use api::{Allocation, AllocationListStub, Client, Node, NodeListStub, QueryOptions};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Show full identifiers and exact times.
    #[arg(long)]
    pub verbose: bool,
    /// A node ID or a prefix of one; without it, list all nodes.
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
}

/// Nodes whose ID starts with `prefix`; just the one if an ID equals it.
pub async fn matching(client: &Client, prefix: &str) -> anyhow::Result<Vec<NodeListStub>> {
    let opts = QueryOptions {
        prefix: Some(prefix.to_string()),
        ..Default::default()
    };
    let (nodes, _) = client
        .nodes(&opts)
        .await
        .map_err(|e| api_error("querying nodes", e))?;
    Ok(narrow(nodes, prefix, |n| &n.id))
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
    let mut matches = matching(client, &prefix).await?;
    let node_id = match matches.len() {
        0 => {
            eprintln!("No node(s) with prefix or ID {prefix:?} found");
            return Ok(1);
        }
        1 => matches.remove(0).id,
        _ => {
            eprintln!(
                "Prefix matched multiple nodes\n\n{}",
                node_list_table(&matches, verbose)
            );
            return Ok(1);
        }
    };
    let node = match client.node(&node_id).await {
        Ok((n, _)) => n,
        Err(e) if e.is_not_found() => {
            eprintln!("No node(s) with prefix or ID {prefix:?} found");
            return Ok(1);
        }
        Err(e) => return Err(api_error("querying node", e)),
    };
    let (allocs, _) = client
        .node_allocations(&node_id, &QueryOptions::default())
        .await
        .map_err(|e| api_error("querying node allocations", e))?;
    println!("{}", node_header(&node, verbose));
    println!(
        "\nAllocated Resources\n{}",
        allocated_resources(&node, &allocs)
    );
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

/// What the node's live allocations reserve against what it can hand out.
fn allocated_resources(n: &Node, allocs: &[Allocation]) -> String {
    let (cpu_total, mem_total, disk_total) = n.allocatable();
    let (mut cpu, mut mem, mut disk) = (0i64, 0i64, 0i64);
    for a in allocs.iter().filter(|a| !a.terminal()) {
        let r = a.resources.clone().or_else(|| {
            a.job
                .as_ref()
                .and_then(|j| j.task_group(&a.task_group))
                .map(|g| g.combined_resources())
        });
        if let Some(r) = r {
            cpu += r.cpu;
            mem += r.memory_mb;
            disk += r.disk_mb;
        }
    }
    table(
        &["CPU", "Memory", "Disk"],
        vec![vec![
            format!("{cpu}/{cpu_total} MHz"),
            format!("{mem} MiB/{mem_total} MiB"),
            format!("{disk} MiB/{disk_total} MiB"),
        ]],
    )
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
}
