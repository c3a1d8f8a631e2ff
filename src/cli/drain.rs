//! `drover node drain` and `drover node eligibility`.

use super::format::{api_error, now_rfc3339};
use super::lookup::{self, Kind};
use super::node::{matching, node_list_table};
use api::{Client, Node, QueryOptions};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Start draining the node.
    #[arg(long)]
    pub enable: bool,
    /// Stop draining the node.
    #[arg(long)]
    pub disable: bool,
    /// How long allocations may take to move before what is left is stopped (e.g. 1h).
    #[arg(long, value_name = "DURATION")]
    pub deadline: Option<String>,
    /// Wait as long as it takes.
    #[arg(long = "no-deadline")]
    pub no_deadline: bool,
    /// Stop every allocation at once.
    #[arg(long)]
    pub force: bool,
    /// Leave system jobs running on the node.
    #[arg(long = "ignore-system")]
    pub ignore_system: bool,
    /// With -disable: keep the node ineligible for new work.
    #[arg(long = "keep-ineligible")]
    pub keep_ineligible: bool,
    /// Return at once instead of following the drain.
    #[arg(long)]
    pub detach: bool,
    /// Follow a drain that is already running.
    #[arg(long)]
    pub monitor: bool,
    /// Drain the node of the agent at -address.
    #[arg(long = "self")]
    pub self_node: bool,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A message recorded with the drain.
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    /// The node's ID or a prefix of it.
    pub node: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct EligibilityArgs {
    /// Let the scheduler place new work on the node.
    #[arg(long)]
    pub enable: bool,
    /// Keep new work off the node; what runs there stays.
    #[arg(long)]
    pub disable: bool,
    /// The node of the agent at -address.
    #[arg(long = "self")]
    pub self_node: bool,
    pub node: Option<String>,
}

/// Go-style durations: "1h", "30m", "1m30s", "500ms" (checked: never a panic).
pub fn parse_deadline(s: &str) -> anyhow::Result<Duration> {
    api::duration::parse_go_duration(s).map_err(anyhow::Error::msg)
}

async fn resolve(client: &Client, node: Option<&str>, self_node: bool) -> anyhow::Result<Node> {
    if self_node {
        // The agent's own node: the one that registered with the address we talk to.
        let (nodes, _) = client
            .nodes(&QueryOptions::default())
            .await
            .map_err(|e| api_error("querying nodes", e))?;
        let want = client.address().trim_start_matches("http://").to_string();
        for n in nodes {
            let (full, _) = client
                .node(&n.id)
                .await
                .map_err(|e| api_error("reading node", e))?;
            if full.http_addr == want {
                return Ok(full);
            }
        }
        anyhow::bail!("no client node registered from the agent at {want}");
    }
    let Some(prefix) = node else {
        anyhow::bail!("name the node (ID or prefix), or pass -self");
    };
    let found = matching(client, prefix).await?;
    let one = lookup::one(Kind::Node, prefix, found, |m| node_list_table(m, false))?;
    Ok(client
        .node(&one.id)
        .await
        .map_err(|e| api_error("reading node", e))?
        .0)
}

pub async fn eligibility(client: &Client, args: EligibilityArgs) -> anyhow::Result<i32> {
    if args.enable == args.disable {
        anyhow::bail!("pass exactly one of -enable or -disable");
    }
    let node = resolve(client, args.node.as_deref(), args.self_node).await?;
    let word = if args.enable {
        "eligible"
    } else {
        "ineligible"
    };
    let _: serde_json::Value = client
        .put(
            &format!("/v1/node/{}/eligibility", node.id),
            &serde_json::json!({ "Eligibility": word }),
        )
        .await
        .map_err(|e| api_error("updating eligibility", e))?;
    println!(
        "Node {:?} scheduling eligibility set: {word} for scheduling",
        node.id
    );
    Ok(0)
}

pub async fn drain(client: &Client, args: DrainArgs) -> anyhow::Result<i32> {
    if args.enable && args.disable {
        anyhow::bail!("pass only one of -enable or -disable");
    }
    let node = resolve(client, args.node.as_deref(), args.self_node).await?;
    if !args.enable && !args.disable {
        if args.monitor {
            return monitor(client, &node.id).await;
        }
        anyhow::bail!("pass -enable or -disable (or -monitor to follow a drain)");
    }
    let body = if args.enable {
        let deadline: i64 = if args.force {
            -1
        } else if args.no_deadline {
            0
        } else {
            let d = match &args.deadline {
                Some(s) => parse_deadline(s)?,
                None => Duration::from_secs(3600),
            };
            d.as_nanos() as i64
        };
        let mut meta = BTreeMap::new();
        if let Some(m) = &args.message {
            meta.insert("message".to_string(), m.clone());
        }
        serde_json::json!({
            "DrainSpec": { "Deadline": deadline, "IgnoreSystemJobs": args.ignore_system },
            "MarkEligible": false,
            "Meta": meta,
        })
    } else {
        serde_json::json!({ "DrainSpec": null, "MarkEligible": !args.keep_ineligible })
    };
    let _: serde_json::Value = client
        .put(&format!("/v1/node/{}/drain", node.id), &body)
        .await
        .map_err(|e| api_error("updating the drain", e))?;
    if args.disable {
        println!("Node {:?} drain strategy unset", node.id);
        return Ok(0);
    }
    println!("Node {:?} drain strategy set", node.id);
    if args.detach {
        return Ok(0);
    }
    monitor(client, &node.id).await
}

/// Follow a drain until every allocation on the node has stopped.
pub async fn monitor(client: &Client, node_id: &str) -> anyhow::Result<i32> {
    println!(
        "{}: Ctrl-C to stop monitoring: will not cancel the node drain",
        now_rfc3339()
    );
    let mut seen: BTreeMap<String, (bool, String)> = BTreeMap::new();
    let mut index = 0;
    loop {
        let (allocs, meta) = client
            .node_allocations(
                node_id,
                &QueryOptions::blocking(index, Duration::from_secs(5)),
            )
            .await
            .map_err(|e| api_error("reading the node's allocations", e))?;
        index = meta.last_index;
        for a in &allocs {
            let migrating = a.desired_transition.should_migrate();
            let prev = seen.get(a.id.as_str()).cloned();
            let short = api::short_id(&a.id);
            if migrating && prev.as_ref().is_none_or(|(m, _)| !m) && !a.client_terminal() {
                println!("{}: Alloc {short:?} marked for migration", now_rfc3339());
            }
            if let Some((_, old)) = &prev {
                if *old != a.client_status {
                    println!(
                        "{}: Alloc {short:?} status {old} -> {}",
                        now_rfc3339(),
                        a.client_status
                    );
                }
            }
            seen.insert(a.id.to_string(), (migrating, a.client_status.to_string()));
        }
        let (node, _) = client
            .node(node_id)
            .await
            .map_err(|e| api_error("reading node", e))?;
        if node.drain_strategy.is_none() {
            match node.last_drain.as_ref().map(|d| d.status.as_str()) {
                Some("complete") => {
                    println!(
                        "{}: All allocations on node {node_id:?} have stopped",
                        now_rfc3339()
                    );
                    println!("{}: Drain complete for node {node_id:?}", now_rfc3339());
                    return Ok(0);
                }
                _ => {
                    println!("{}: Drain canceled for node {node_id:?}", now_rfc3339());
                    return Ok(1);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_like_nomad() {
        assert_eq!(parse_deadline("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_deadline("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_deadline("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_deadline("soon").is_err());
    }
}
