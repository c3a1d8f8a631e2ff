//! A job diff (`api::JobDiff`, what `job plan` and `/v1/job/:id/versions?diffs=true`
//! compute) as lines in the shape `job plan` prints: a `+`, `-` or `+/-` marker, the
//! object or field, old `=>` new, and what a task change forces. Unchanged fields are left
//! out; each line's kind is in words for screen readers (the marker) and a class for colour.

use api::diff::{FieldDiff, ObjectDiff};
use api::{DiffType, JobDiff};
use maud::{html, Markup};

/// One rendered line: its indent depth, kind and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub depth: usize,
    pub kind: DiffType,
    pub text: String,
}

fn class(kind: DiffType) -> &'static str {
    match kind {
        DiffType::Added => "d-add",
        DiffType::Deleted => "d-del",
        DiffType::Edited => "d-edit",
        DiffType::None => "d-none",
    }
}

fn field_line(f: &FieldDiff) -> String {
    let mut s = match f.diff_type {
        DiffType::Added => format!("{}: {:?}", f.name, f.new),
        DiffType::Deleted => format!("{}: {:?}", f.name, f.old),
        _ => format!("{}: {:?} => {:?}", f.name, f.old, f.new),
    };
    if !f.annotations.is_empty() {
        s.push_str(&format!(" ({})", f.annotations.join(", ")));
    }
    s
}

fn fields(out: &mut Vec<Line>, depth: usize, fs: &[FieldDiff]) {
    for f in fs.iter().filter(|f| f.diff_type != DiffType::None) {
        out.push(Line {
            depth,
            kind: f.diff_type,
            text: field_line(f),
        });
    }
}

fn objects(out: &mut Vec<Line>, depth: usize, os: &[ObjectDiff]) {
    for o in os.iter().filter(|o| o.diff_type != DiffType::None) {
        out.push(Line {
            depth,
            kind: o.diff_type,
            text: format!("{} {{", o.name),
        });
        fields(out, depth + 1, &o.fields);
        objects(out, depth + 1, &o.objects);
        out.push(Line {
            depth,
            kind: DiffType::None,
            text: "}".into(),
        });
    }
}

/// The order `job plan` lists a group's allocation counts in.
const UPDATE_ORDER: [&str; 7] = [
    "create",
    "destroy",
    "migrate",
    "in-place update",
    "create/destroy update",
    "canary",
    "ignore",
];

/// The diff as lines, as `job plan` prints it without `-verbose`: every group and task
/// gets a header; fields are listed only under what was edited (an added job, group or
/// task is its header alone).
pub fn lines(d: &JobDiff) -> Vec<Line> {
    let mut out = Vec::new();
    let edited = |t: DiffType| t == DiffType::Edited;
    out.push(Line {
        depth: 0,
        kind: d.diff_type,
        text: format!("Job: {:?}", d.id),
    });
    if edited(d.diff_type) {
        fields(&mut out, 1, &d.fields);
        objects(&mut out, 1, &d.objects);
    }
    for g in &d.task_groups {
        let updates: Vec<String> = UPDATE_ORDER
            .iter()
            .filter_map(|k| g.updates.get(*k).map(|n| format!("{n} {k}")))
            .collect();
        let mut text = format!("Task Group: {:?}", g.name);
        if !updates.is_empty() {
            text.push_str(&format!(" ({})", updates.join(", ")));
        }
        out.push(Line {
            depth: 1,
            kind: g.diff_type,
            text,
        });
        if edited(g.diff_type) {
            fields(&mut out, 2, &g.fields);
            objects(&mut out, 2, &g.objects);
        }
        for t in &g.tasks {
            let mut text = format!("Task: {:?}", t.name);
            if !t.annotations.is_empty() {
                text.push_str(&format!(" ({})", t.annotations.join(", ")));
            }
            out.push(Line {
                depth: 2,
                kind: t.diff_type,
                text,
            });
            if edited(t.diff_type) {
                fields(&mut out, 3, &t.fields);
                objects(&mut out, 3, &t.objects);
            }
        }
    }
    out
}

/// The diff as a `<pre>` block, or a sentence when nothing changed.
pub fn render(d: &JobDiff, label: &str) -> Markup {
    let ls = lines(d);
    html! {
        @if ls.iter().all(|l| l.kind == DiffType::None) {
            p class="help" { "No changes to the job specification." }
        } @else {
            pre class="diff" aria-label=(label) {
                @for l in &ls {
                    span class=(class(l.kind)) {
                        @let marker = l.kind.marker();
                        (format!("{}{}{}{}\n", "  ".repeat(l.depth), marker, if marker.is_empty() { "" } else { " " }, l.text))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_task_reads_like_job_plan() {
        let old: api::Job = serde_json::from_value(serde_json::json!({
            "ID": "web", "TaskGroups": [{"Name": "main", "Count": 1,
              "Tasks": [{"Name": "t", "Driver": "raw_exec", "Config": {"command": "/bin/a"}}]}]
        }))
        .unwrap();
        let mut new = old.clone();
        new.task_groups[0].count = 3;
        new.task_groups[0].tasks[0].config =
            serde_json::from_value(serde_json::json!({"command": "/bin/<b>"})).unwrap();
        let d = api::diff::job_diff(Some(&old), &new);
        let text: Vec<String> = lines(&d).into_iter().map(|l| l.text).collect();
        let all = text.join("\n");
        assert!(all.contains("Job: \"web\""), "{all}");
        assert!(all.contains("Count: \"1\" => \"3\""), "{all}");
        assert!(all.contains("Task: \"t\""), "{all}");
        assert!(all.contains("/bin/a"), "{all}");
        let html = render(&d, "diff").into_string();
        assert!(html.contains("+/- Job"), "{html}");
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        let same = api::diff::job_diff(Some(&old), &old);
        assert!(render(&same, "diff").into_string().contains("No changes"));
    }
}
