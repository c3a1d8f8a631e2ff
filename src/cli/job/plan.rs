//! `job plan`: a dry run on the servers, shown as a diff against the registered job.

use super::{load_job, PlanArgs};
use crate::cli::monitor;
use api::diff::{DiffType, FieldDiff, JobDiff, ObjectDiff};
use api::{Client, JobPlanRequest, JobPlanResponse};

/// `job plan`: a dry run on the servers, shown as a diff against the registered job,
/// what the scheduler would do, and the index to pass to `job run -check-index`.
pub async fn plan(client: &Client, args: PlanArgs) -> anyhow::Result<i32> {
    const ERROR: i32 = 255;
    let mut job = match load_job(&args.file, &args.vars, &args.var_files) {
        Ok(job) => job,
        Err(msg) => {
            eprintln!("{msg}");
            return Ok(ERROR);
        }
    };
    let client = &super::place_in_namespace(client, &mut job);
    let req = JobPlanRequest {
        job: Some(job.clone()),
        diff: true,
        policy_override: false,
    };
    let path = format!("/v1/job/{}/plan", api::url::encode(&job.id));
    let resp: JobPlanResponse = match client.put(&path, &req).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error during plan: {e}");
            return Ok(ERROR);
        }
    };
    if let Some(diff) = &resp.diff {
        println!("{}", render_diff(diff, args.verbose));
    }
    println!("{}", render_dry_run(&resp));
    let file = args.file.display();
    println!(
        "\nJob Modify Index: {index}\n\
         To submit the job with version verification run:\n\n\
         drover job run -check-index {index} {file}\n\n\
         When running the job with the check-index flag, the job will only be run if the\n\
         job modify index given matches the server-side version. If the index has\n\
         changed, another user has modified the job and the plan's results are\n\
         potentially invalid.",
        index = resp.job_modify_index
    );
    let changes = resp.annotations.as_ref().is_some_and(|a| {
        a.desired_tg_updates
            .values()
            .any(|u| u.creates_or_destroys())
    });
    Ok(i32::from(changes))
}

/// `Scheduler dry-run:` and whether every allocation would find a node.
fn render_dry_run(resp: &JobPlanResponse) -> String {
    let mut lines = vec!["Scheduler dry-run:".to_string()];
    if resp.failed_tg_allocs.is_empty() {
        lines.push("- All tasks successfully allocated.".into());
    } else {
        lines.push("- WARNING: Failed to place all allocations.".into());
        for (group, metric) in &resp.failed_tg_allocs {
            let n = 1 + metric.coalesced_failures;
            let s = if n == 1 { "" } else { "s" };
            lines.push(format!(
                "  Task Group {group:?} (failed to place {n} allocation{s}):"
            ));
            lines.extend(monitor::render_metric(metric, "    "));
        }
    }
    lines.join("\n")
}

/// A job diff as `job plan` prints it: `+` added, `-` deleted, `+/-` edited. Without
/// `verbose`, added and deleted jobs, groups and tasks show only their header line.
pub fn render_diff(diff: &JobDiff, verbose: bool) -> String {
    let mut out = Vec::new();
    let head = |t: DiffType| {
        if t == DiffType::None {
            String::new()
        } else {
            format!("{} ", t.marker())
        }
    };
    out.push(format!("{}Job: {:?}", head(diff.diff_type), diff.id));
    let expand = |t: DiffType| verbose || t == DiffType::Edited;
    if expand(diff.diff_type) {
        render_fields(&diff.fields, &diff.objects, 0, &mut out);
    }
    for g in &diff.task_groups {
        let counts = [
            "create",
            "destroy",
            "migrate",
            "in-place update",
            "create/destroy update",
            "canary",
            "ignore",
        ]
        .iter()
        .filter_map(|k| g.updates.get(*k).map(|n| format!("{n} {k}")))
        .collect::<Vec<_>>();
        let counts = if counts.is_empty() {
            String::new()
        } else {
            format!(" ({})", counts.join(", "))
        };
        out.push(format!(
            "{}Task Group: {:?}{counts}",
            head(g.diff_type),
            g.name
        ));
        if expand(g.diff_type) {
            render_fields(&g.fields, &g.objects, 1, &mut out);
        }
        for t in &g.tasks {
            let notes = if t.annotations.is_empty() {
                String::new()
            } else {
                format!(" ({})", t.annotations.join(", "))
            };
            let marker = if t.diff_type == DiffType::None {
                "   ".to_string()
            } else {
                head(t.diff_type)
            };
            out.push(format!("  {marker}Task: {:?}{notes}", t.name));
            if expand(t.diff_type) {
                render_fields(&t.fields, &t.objects, 2, &mut out);
            }
        }
    }
    out.join("\n") + "\n"
}

fn render_fields(
    fields: &[FieldDiff],
    objects: &[ObjectDiff],
    depth: usize,
    out: &mut Vec<String>,
) {
    let pad = "  ".repeat(depth);
    for f in fields {
        let notes = if f.annotations.is_empty() {
            String::new()
        } else {
            format!(" ({})", f.annotations.join(", "))
        };
        let value = match f.diff_type {
            DiffType::Added => format!("{:?}", f.new),
            DiffType::Deleted => format!("{:?}", f.old),
            _ => format!("{:?} => {:?}", f.old, f.new),
        };
        out.push(format!(
            "{pad}{} {}: {value}{notes}",
            f.diff_type.marker(),
            f.name
        ));
    }
    for o in objects {
        out.push(format!("{pad}{} {} {{", o.diff_type.marker(), o.name));
        render_fields(&o.fields, &o.objects, depth + 1, out);
        out.push(format!("{pad}  }}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::Job;

    #[test]
    fn plan_diff_shows_headers_only_for_new_things_unless_verbose() {
        let job = Job {
            id: "web".into(),
            priority: 50,
            task_groups: vec![api::TaskGroup {
                name: "api".into(),
                count: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let added = api::diff::job_diff(None, &job);
        let short = render_diff(&added, false);
        assert_eq!(short, "+ Job: \"web\"\n+ Task Group: \"api\"\n");
        let long = render_diff(&added, true);
        assert!(long.contains("+ Priority: \"50\""), "{long}");
        assert!(long.contains("  + Count: \"2\""), "{long}");

        let mut more = job.clone();
        more.task_groups[0].count = 1;
        more.datacenters = vec!["dc1".into()];
        let edited = api::diff::job_diff(Some(&job), &more);
        let text = render_diff(&edited, false);
        assert!(
            text.starts_with("+/- Job: \"web\"\n+ Datacenters {\n  + Datacenters: \"dc1\"\n  }\n"),
            "{text}"
        );
        assert!(
            text.contains("+/- Task Group: \"api\"\n  +/- Count: \"2\" => \"1\""),
            "{text}"
        );
    }
}
