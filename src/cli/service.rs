//! `drover service list|info|delete`: services registered with `provider = "nomad"`.

use crate::cli::format::{api_error, id, kv, or_none, table};
use api::{Client, QueryOptions, ServiceRegistration};

#[derive(Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// List registered services and their tags.
    List(ListArgs),
    /// Show the registered instances of a service.
    Info(InfoArgs),
    /// Delete one service registration.
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The namespace to list (`*` for every namespace).
    #[arg(long)]
    pub namespace: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// Show every field of each instance, with full identifiers.
    #[arg(long)]
    pub verbose: bool,
    /// The namespace of the service (`*` for every namespace).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The service name.
    #[arg(value_name = "SERVICE")]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The namespace of the service.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The service name.
    #[arg(value_name = "SERVICE")]
    pub name: String,
    /// The registration ID (as `service info -verbose` shows it).
    #[arg(value_name = "ID")]
    pub id: String,
}

pub async fn run(client: &Client, cmd: ServiceCommand) -> anyhow::Result<i32> {
    match cmd {
        ServiceCommand::List(a) => list(client, a).await,
        ServiceCommand::Info(a) => info(client, a).await,
        ServiceCommand::Delete(a) => delete(client, a).await,
    }
}

/// Tags as Nomad prints them: `[a,b]`.
fn tags_cell(tags: &[String]) -> String {
    format!("[{}]", tags.join(","))
}

async fn list(client: &Client, args: ListArgs) -> anyhow::Result<i32> {
    let ns = args.namespace.as_deref();
    let (namespaces, _) = client
        .services(ns, &QueryOptions::default())
        .await
        .map_err(|e| api_error("listing services", e))?;
    let all_namespaces = ns == Some("*");
    let mut rows = Vec::new();
    for n in &namespaces {
        for s in &n.services {
            let mut row = vec![s.service_name.clone(), tags_cell(&s.tags)];
            if all_namespaces {
                row.insert(1, n.namespace.clone());
            }
            rows.push(row);
        }
    }
    if rows.is_empty() {
        println!("No service registrations found");
        return Ok(0);
    }
    let header: &[&str] = if all_namespaces {
        &["Service Name", "Namespace", "Tags"]
    } else {
        &["Service Name", "Tags"]
    };
    print!("{}", table(header, rows));
    Ok(0)
}

fn address(r: &ServiceRegistration) -> String {
    if r.address.contains(':') && !r.address.starts_with('[') {
        // An IPv6 address.
        format!("[{}]:{}", r.address, r.port)
    } else {
        format!("{}:{}", r.address, r.port)
    }
}

async fn info(client: &Client, args: InfoArgs) -> anyhow::Result<i32> {
    let (regs, _) = client
        .service(
            &args.name,
            args.namespace.as_deref(),
            &QueryOptions::default(),
        )
        .await
        .map_err(|e| api_error("reading service", e))?;
    if regs.is_empty() {
        eprintln!("No service registrations found for {:?}", args.name);
        return Ok(1);
    }
    print!("{}", render_info(&regs, args.verbose));
    Ok(0)
}

fn render_info(regs: &[ServiceRegistration], verbose: bool) -> String {
    if verbose {
        return regs
            .iter()
            .map(|r| {
                kv(&[
                    ("ID", r.id.clone()),
                    ("Service Name", r.service_name.clone()),
                    ("Namespace", r.namespace.clone()),
                    ("Job ID", r.job_id.clone()),
                    ("Alloc ID", r.alloc_id.clone()),
                    ("Node ID", r.node_id.clone()),
                    ("Datacenter", or_none(&r.datacenter)),
                    ("Address", address(r)),
                    ("Tags", tags_cell(&r.tags)),
                ])
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    let rows = regs
        .iter()
        .map(|r| {
            vec![
                r.job_id.clone(),
                address(r),
                tags_cell(&r.tags),
                id(&r.node_id, false).to_string(),
                id(&r.alloc_id, false).to_string(),
            ]
        })
        .collect();
    table(&["Job ID", "Address", "Tags", "Node ID", "Alloc ID"], rows)
}

async fn delete(client: &Client, args: DeleteArgs) -> anyhow::Result<i32> {
    client
        .delete_service(&args.name, &args.id, args.namespace.as_deref())
        .await
        .map_err(|e| api_error("deleting service registration", e))?;
    println!("Successfully deleted service registration");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_shows_one_row_per_instance_with_short_ids_and_verbose_shows_all_fields() {
        let r = ServiceRegistration {
            id: "_nomad-task-0123456789abcdef-web-web-http".into(),
            service_name: "web".into(),
            namespace: "default".into(),
            node_id: "fedcba9876543210".into(),
            job_id: "shop".into(),
            alloc_id: "0123456789abcdef".into(),
            tags: vec!["a".into(), "b".into()],
            address: "10.0.0.1".into(),
            port: 8080,
            ..Default::default()
        };
        let short = render_info(std::slice::from_ref(&r), false);
        assert!(short.contains("10.0.0.1:8080"), "{short}");
        assert!(short.contains("[a,b]"), "{short}");
        assert!(short.contains("01234567") && !short.contains("0123456789abcdef"));
        let long = render_info(&[r], true);
        assert!(
            long.contains("_nomad-task-0123456789abcdef-web-web-http"),
            "{long}"
        );
        assert!(long.contains("fedcba9876543210"), "{long}");
        let v6 = ServiceRegistration {
            address: "::1".into(),
            port: 80,
            ..Default::default()
        };
        assert_eq!(address(&v6), "[::1]:80");
    }
}
