//! `drover var get|put|list|purge`: Nomad Variables.

use crate::cli::format::{api_error, kv, rfc3339, table};
use api::client::VariableWrite;
use api::{Client, QueryOptions, Variable};
use std::collections::BTreeMap;

#[derive(Debug, clap::Subcommand)]
pub enum VarCommand {
    /// Print a variable (as JSON, or -out table), or one item's value with -item.
    Get(GetArgs),
    /// Create or replace a variable's items: PATH key=value ... (value @file reads a
    /// file, - reads standard input).
    Put(PutArgs),
    /// List the variables under a path prefix (metadata only).
    List(ListArgs),
    /// Delete a variable.
    Purge(PurgeArgs),
}

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The namespace of the variable.
    #[arg(long, env = "NOMAD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Print only this item's value.
    #[arg(long)]
    pub item: Option<String>,
    /// Output format: json or table.
    #[arg(long, default_value = "json")]
    pub out: String,
    /// The variable's path.
    pub path: String,
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    /// The namespace to write to.
    #[arg(long, env = "NOMAD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Write only if the variable's modify index is this one (0: only if it does not
    /// exist). Without it (or -force), put only creates.
    #[arg(long, value_name = "INDEX")]
    pub check_index: Option<u64>,
    /// Write whatever the variable's index on the server.
    #[arg(long)]
    pub force: bool,
    /// Output format after writing: none, json or table.
    #[arg(long, default_value = "none")]
    pub out: String,
    /// The variable's path.
    pub path: String,
    /// Items as key=value.
    #[arg(value_name = "KEY=VALUE")]
    pub items: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The namespace to list (`*` for every namespace).
    #[arg(long, env = "NOMAD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub out: String,
    /// Only paths starting with this prefix.
    pub prefix: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PurgeArgs {
    /// The namespace of the variable.
    #[arg(long, env = "NOMAD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Delete only if the variable's modify index is this one.
    #[arg(long, value_name = "INDEX")]
    pub check_index: Option<u64>,
    /// The variable's path.
    pub path: String,
}

pub async fn run(client: &Client, cmd: VarCommand) -> anyhow::Result<i32> {
    match cmd {
        VarCommand::Get(a) => get(client, a).await,
        VarCommand::Put(a) => put(client, a).await,
        VarCommand::List(a) => list(client, a).await,
        VarCommand::Purge(a) => purge(client, a).await,
    }
}

/// A variable as `-out table` prints it, Nomad's layout.
fn render_table(v: &Variable) -> String {
    let head = kv(&[
        ("Namespace", v.namespace.clone()),
        ("Path", v.path.clone()),
        ("Create Time", rfc3339(v.create_time)),
        ("Check Index", v.modify_index.to_string()),
    ]);
    let items: Vec<(&str, &str)> = v
        .items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    format!("{head}\n\nItems\n{}\n", kv(&items))
}

fn render(v: &Variable, out: &str) -> anyhow::Result<String> {
    match out {
        "json" => Ok(format!("{}\n", serde_json::to_string_pretty(v)?)),
        "table" => Ok(render_table(v)),
        "none" => Ok(String::new()),
        other => anyhow::bail!("Error: unknown -out format {other:?}: use json, table or none"),
    }
}

async fn get(client: &Client, args: GetArgs) -> anyhow::Result<i32> {
    let (v, _) = match client
        .variable(
            &args.path,
            args.namespace.as_deref(),
            &QueryOptions::default(),
        )
        .await
    {
        Ok(v) => v,
        Err(e) if e.is_not_found() => {
            eprintln!(
                "Error retrieving variable: variable {:?} not found",
                args.path
            );
            return Ok(1);
        }
        Err(e) => return Err(api_error("retrieving variable", e)),
    };
    if let Some(item) = &args.item {
        return match v.items.get(item) {
            Some(value) => {
                println!("{value}");
                Ok(0)
            }
            None => {
                eprintln!("Error: variable {:?} has no item {item:?}", args.path);
                Ok(1)
            }
        };
    }
    print!("{}", render(&v, &args.out)?);
    Ok(0)
}

/// `key=value` items; `@file` reads a file and `-` standard input as the value.
fn parse_items(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut items = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            anyhow::bail!("Error: item {a:?} is not key=value");
        };
        if k.is_empty() {
            anyhow::bail!("Error: item {a:?} has an empty key");
        }
        let value = if let Some(file) = v.strip_prefix('@') {
            std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("Error reading {file:?} for item {k:?}: {e}"))?
        } else if v == "-" {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| anyhow::anyhow!("Error reading item {k:?} from stdin: {e}"))?
        } else {
            v.to_string()
        };
        items.insert(k.to_string(), value);
    }
    Ok(items)
}

fn conflict_message(path: &str, given: u64, current: Option<&Variable>) -> String {
    let server = current.map_or("none (the variable does not exist)".to_string(), |v| {
        v.modify_index.to_string()
    });
    format!(
        "Error: check-and-set conflict on variable {path:?}: your check index ({given}) does \
         not match the server's ({server}). If you are sure, add -force or \
         -check-index=<index> before the path."
    )
}

async fn put(client: &Client, args: PutArgs) -> anyhow::Result<i32> {
    let items = parse_items(&args.items)?;
    if items.is_empty() {
        anyhow::bail!("Error: no items given: pass key=value after the path");
    }
    let var = Variable {
        namespace: args.namespace.clone().unwrap_or_default(),
        path: args.path.clone(),
        items,
        ..Default::default()
    };
    let cas = if args.force {
        None
    } else {
        Some(args.check_index.unwrap_or(0))
    };
    match client
        .put_variable(&var, cas)
        .await
        .map_err(|e| api_error("creating variable", e))?
    {
        VariableWrite::Written(v) => {
            let v = v.unwrap_or(var);
            if args.out == "none" {
                println!(
                    "Created variable {:?} with modify index {}",
                    v.path, v.modify_index
                );
            } else {
                print!("{}", render(&v, &args.out)?);
            }
            Ok(0)
        }
        VariableWrite::Conflict(current) => {
            eprintln!(
                "{}",
                conflict_message(&args.path, cas.unwrap_or(0), current.as_ref())
            );
            Ok(1)
        }
    }
}

async fn list(client: &Client, args: ListArgs) -> anyhow::Result<i32> {
    let prefix = args.prefix.unwrap_or_default();
    let (vars, _) = client
        .variables(&prefix, args.namespace.as_deref(), &QueryOptions::default())
        .await
        .map_err(|e| api_error("listing variables", e))?;
    if args.out == "json" {
        println!("{}", serde_json::to_string_pretty(&vars)?);
        return Ok(0);
    }
    if vars.is_empty() {
        println!("No matching variables found");
        return Ok(0);
    }
    let rows = vars
        .iter()
        .map(|v| vec![v.namespace.clone(), v.path.clone(), rfc3339(v.modify_time)])
        .collect();
    println!("{}", table(&["Namespace", "Path", "Last Updated"], rows));
    Ok(0)
}

async fn purge(client: &Client, args: PurgeArgs) -> anyhow::Result<i32> {
    match client
        .delete_variable(&args.path, args.namespace.as_deref(), args.check_index)
        .await
        .map_err(|e| api_error("purging variable", e))?
    {
        VariableWrite::Written(_) => {
            println!("Successfully purged variable {:?}!", args.path);
            Ok(0)
        }
        VariableWrite::Conflict(current) => {
            eprintln!(
                "{}",
                conflict_message(&args.path, args.check_index.unwrap_or(0), current.as_ref())
            );
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_parse_as_key_value_and_refuse_a_missing_equals() {
        let items = parse_items(&["a=1".into(), "b=x=y".into(), "c=".into()]).unwrap();
        assert_eq!(items["a"], "1");
        assert_eq!(items["b"], "x=y");
        assert_eq!(items["c"], "");
        assert!(parse_items(&["nope".into()]).is_err());
        assert!(parse_items(&["=v".into()]).is_err());
    }

    #[test]
    fn the_table_shows_the_check_index_and_the_items() {
        let v = Variable {
            namespace: "default".into(),
            path: "a/b".into(),
            modify_index: 12,
            items: [("user".to_string(), "me".to_string())].into(),
            ..Default::default()
        };
        let out = render_table(&v);
        assert!(out.contains("Check Index = 12"), "{out}");
        assert!(out.contains("user = me"), "{out}");
    }
}
