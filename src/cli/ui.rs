//! `drover ui [-show-url] [ID]`: the web UI's address for the cluster, or for the job,
//! allocation or node an ID (or prefix) names, opened in a browser (`xdg-open`) or
//! printed. Links are built by the UI's own `ui::fmt` helpers, so they match its routes.

use super::lookup::{self, Kind};
use super::{alloc, job, node};
use api::Client;

#[derive(Debug, clap::Args)]
pub struct UiArgs {
    /// Print the URL instead of opening it in a browser.
    #[arg(long = "show-url")]
    pub show_url: bool,
    /// A job, allocation or node ID, or a prefix of one.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
}

pub async fn run(client: &Client, args: UiArgs) -> anyhow::Result<i32> {
    let path = match &args.id {
        None => "/ui/jobs".to_string(),
        Some(id) => match page_of(client, id).await? {
            Some(path) => path,
            None => {
                eprintln!("No job, allocation or node with prefix or ID {id:?} found");
                return Ok(1);
            }
        },
    };
    let url = format!("{}{path}", client.address().trim_end_matches('/'));
    if args.show_url {
        println!("URL for web UI: {url}");
        return Ok(0);
    }
    println!("Opening URL {url:?}");
    let opened = std::process::Command::new("xdg-open")
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = opened {
        eprintln!("Could not start a browser (xdg-open: {e}); open the URL above yourself.");
    }
    Ok(0)
}

/// The UI path of what `id` names, asked in `drover status`'s order: a job, then an
/// allocation, then a node. Several matches of one kind are an error listing them.
async fn page_of(client: &Client, id: &str) -> anyhow::Result<Option<String>> {
    if let Some(job) = job::resolve_stub(client, id).await? {
        return Ok(Some(ui::fmt::job_href(&job.namespace, &job.id)));
    }
    let allocs = alloc::matching(client, id).await?;
    if !allocs.is_empty() {
        let a = lookup::one(Kind::Alloc, id, allocs, |m| alloc::matches_table(m, false))?;
        return Ok(Some(ui::fmt::alloc_href(&a.id)));
    }
    let nodes = node::matching(client, id).await?;
    if !nodes.is_empty() {
        let n = lookup::one(Kind::Node, id, nodes, |m| node::node_list_table(m, false))?;
        return Ok(Some(ui::fmt::node_href(&n.id)));
    }
    Ok(None)
}
