//! `job stop`: deregister a job, asking first when the ID given is only a prefix.

use super::{not_found, resolve_scoped, StopArgs};
use crate::cli::format::api_error;
use crate::cli::monitor;
use api::Client;
use std::io::{BufRead, Write};

pub async fn stop(client: &Client, args: StopArgs) -> anyhow::Result<i32> {
    let Some((id, client)) = resolve_scoped(client, &args.job).await? else {
        return not_found(&args.job);
    };
    let client = &client;
    if id != args.job && !args.yes {
        match confirm(&format!("Are you sure you want to stop job {id:?}? [y/N] ")) {
            Confirm::Yes => {}
            Confirm::No => {
                println!("Cancelling job stop");
                return Ok(0);
            }
            Confirm::Unclear => {
                println!("No confirmation detected. For confirmation, an exact 'y' is required.");
                return Ok(1);
            }
        }
    }
    let resp = client
        .deregister_job(&id, args.purge)
        .await
        .map_err(|e| api_error("deregistering job", e))?;
    if resp.eval_id.is_empty() {
        return Ok(0);
    }
    if args.detach {
        println!("{}", resp.eval_id);
        return Ok(0);
    }
    monitor::monitor(client, &resp.eval_id, args.verbose).await
}

enum Confirm {
    Yes,
    No,
    Unclear,
}

/// Ask on the terminal; only an exact `y` is yes, nothing or anything starting with `n`
/// is no.
fn confirm(question: &str) -> Confirm {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return Confirm::No;
    }
    confirm_answer(answer.trim())
}

fn confirm_answer(answer: &str) -> Confirm {
    match answer {
        "y" => Confirm::Yes,
        "" => Confirm::No,
        a if a.to_ascii_lowercase().starts_with('n') => Confirm::No,
        _ => Confirm::Unclear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_exact_y_confirms() {
        assert!(matches!(confirm_answer("y"), Confirm::Yes));
        assert!(matches!(confirm_answer(""), Confirm::No));
        assert!(matches!(confirm_answer("No"), Confirm::No));
        assert!(matches!(confirm_answer("yes"), Confirm::Unclear));
    }
}
