//! The web UI through the real binary (`drover agent -dev`): every page answers 200 with
//! the Content-Security-Policy, shows what was submitted with hostile text escaped, the
//! Stop, eligibility and drain forms act through the `/v1` path while cross-origin POSTs are
//! refused, and `/ui/live` tells an open tab when the state moves.

mod common;

use common::*;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

/// The job the pages show: one raw_exec task that sleeps.
fn web_job() -> String {
    raw_exec_job("ui-web", "exec sleep 3600", 20, 16)
}

const HOSTILE: &str = "<script>alert(1)</script>";

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET a UI page: it must answer 200 with the UI's CSP; returns the HTML.
fn page(agent: &DevAgent, path: &str) -> String {
    page_at(&agent.addr(), path)
}

/// GET a UI page of the server at `base` (`http://ip:port`).
fn page_at(base: &str, path: &str) -> String {
    let r = client()
        .get(format!("{base}{path}"))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status().as_u16();
    let csp = r
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = r.text().unwrap_or_default();
    assert_eq!(status, 200, "GET {path}: {body}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "GET {path}: CSP {csp:?}"
    );
    body
}

/// POST a form to the UI with `origin`; returns (status, Location, body).
fn post(
    agent: &DevAgent,
    path: &str,
    origin: &str,
    form: &[(&str, &str)],
) -> (u16, String, String) {
    post_at(&agent.addr(), path, origin, form)
}

/// POST a form to the UI of the server at `base` with `origin`.
fn post_at(base: &str, path: &str, origin: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let r = client()
        .post(format!("{base}{path}"))
        .header("Origin", origin)
        .form(form)
        .send()
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, location, r.text().unwrap_or_default())
}

fn run_web_job(agent: &DevAgent) -> String {
    let out = agent.run_job("ui-web.hcl", &web_job(), &["-detach"]);
    assert!(
        out.status.success(),
        "job run: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the ui-web allocation", Duration::from_secs(30), || {
        let (_, allocs) = agent.get_json("/v1/job/ui-web/allocations");
        allocs.as_array()?.first()?["ID"]
            .as_str()
            .map(str::to_string)
    })
}

#[test]
fn every_ui_page_renders_escaped_with_a_csp_and_actions_need_the_same_origin() {
    let agent = DevAgent::start();
    let node = wait_for("the dev node", Duration::from_secs(30), || {
        let (_, nodes) = agent.get_json("/v1/nodes");
        nodes.as_array()?.first()?["ID"]
            .as_str()
            .map(str::to_string)
    });
    let alloc = run_web_job(&agent);
    // A job whose ID is markup, submitted through the API.
    let hostile = serde_json::json!({"Job": {
        "ID": HOSTILE, "Name": HOSTILE, "Type": "batch", "Datacenters": ["nowhere"],
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/true"}}]}]
    }});
    let r = client()
        .put(format!("{}/v1/jobs", agent.addr()))
        .json(&hostile)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "register: {}", r.text().unwrap());

    // /ui/ and /ui redirect to the jobs list.
    let r = client()
        .get(format!("{}/ui/", agent.addr()))
        .send()
        .unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    assert_eq!(r.headers()["location"], "/ui/jobs");

    let jobs = page(&agent, "/ui/jobs");
    assert!(jobs.contains("href=\"/ui/jobs/ui-web\""), "{jobs}");
    assert!(
        jobs.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{jobs}"
    );
    assert!(
        !jobs.contains(HOSTILE),
        "the hostile ID reached the page unescaped"
    );
    assert!(!jobs.contains("<style"), "inline style in the page");
    let filtered = page(&agent, "/ui/jobs?type=batch");
    assert!(!filtered.contains("/ui/jobs/ui-web\""), "{filtered}");

    let job = page(&agent, "/ui/jobs/ui-web");
    assert!(
        job.contains("Task groups") && job.contains(&alloc[..8]),
        "{job}"
    );
    let hostile_page = page(&agent, "/ui/jobs/%3Cscript%3Ealert%281%29%3C%2Fscript%3E");
    assert!(!hostile_page.contains(HOSTILE));
    // Its placement fails (no such datacenter), which reads as pending, never failed.
    wait_for(
        "the hostile job's evaluation",
        Duration::from_secs(20),
        || {
            let p = page(&agent, "/ui/jobs/%3Cscript%3Ealert%281%29%3C%2Fscript%3E");
            p.contains("pending: 1 allocation not placed yet")
                .then_some(())
        },
    );
    let a = page(&agent, &format!("/ui/allocations/{alloc}"));
    assert!(
        a.contains("Task sleep") || a.contains("No task has reported"),
        "{a}"
    );
    assert!(page(&agent, "/ui/clients").contains(&node[..8]));
    assert!(page(&agent, &format!("/ui/clients/{node}")).contains("Drain…"));
    assert!(page(&agent, "/ui/servers").contains("the leader"));
    assert!(page(&agent, "/ui/evaluations").contains("job-register"));
    let (_, evals) = agent.get_json("/v1/evaluations");
    let eval = evals[0]["ID"].as_str().expect("an evaluation").to_string();
    assert!(page(&agent, &format!("/ui/evaluations/{eval}")).contains(&eval));
    // The search box jumps to the one match.
    let r = client()
        .get(format!("{}/ui/search?q=ui-w", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(r.headers()["location"], "/ui/jobs/ui-web");

    // The embedded assets, cached for a year.
    let css = jobs
        .split("href=\"/ui/assets/")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let r = client()
        .get(format!("{}/ui/assets/{css}", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=31536000"));

    // A POST from another origin is refused and changes nothing.
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/ui-web/stop",
        "http://evil.example",
        &[("namespace", "default")],
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("refused a cross-origin request"), "{body}");
    let (_, j) = agent.get_json("/v1/job/ui-web");
    assert_eq!(j["Stop"], false);

    // From the UI's own origin, Stop goes through and lands back on the job page.
    let origin = agent.addr();
    let (status, location, body) = post(
        &agent,
        "/ui/jobs/ui-web/stop",
        &origin,
        &[("namespace", "default")],
    );
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/jobs/ui-web?done=stopped"),
        "{body}"
    );
    let (_, j) = agent.get_json("/v1/job/ui-web");
    assert_eq!(j["Stop"], true, "{j}");
    assert!(page(&agent, &location).contains("The job was stopped"));

    // A batch allocation keeps the drain below going until its deadline (batch work is
    // let finish): without one, a node whose only allocation has stopped finishes
    // draining at once, and the drain's settings are gone before they can be read.
    let hold = raw_exec_job("ui-hold", "exec sleep 3600", 50, 16)
        .replace("type = \"service\"", "type = \"batch\"");
    let out = agent.run_job("ui-hold.hcl", &hold, &["-detach"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the ui-hold allocation to run",
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json("/v1/job/ui-hold/allocations");
            (allocs.as_array()?.first()?["ClientStatus"] == "running").then_some(())
        },
    );

    // Node eligibility and drain go through the /v1 handlers (and their validation).
    let node_page = format!("/ui/clients/{node}");
    let (status, _, body) = post(
        &agent,
        &format!("{node_page}/eligibility"),
        &origin,
        &[("eligibility", "ineligible")],
    );
    assert_eq!(status, 303, "{body}");
    let (_, n) = agent.get_json(&format!("/v1/node/{node}"));
    assert_eq!(n["SchedulingEligibility"], "ineligible");
    let (status, _, body) = post(
        &agent,
        &format!("{node_page}/drain"),
        &origin,
        &[("deadline", "soon")],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid deadline"), "{body}");
    let (status, _, body) = post(
        &agent,
        &format!("{node_page}/drain"),
        &origin,
        &[("deadline", "10m"), ("ignore_system_jobs", "true")],
    );
    assert_eq!(status, 303, "{body}");
    let (_, n) = agent.get_json(&format!("/v1/node/{node}"));
    assert_eq!(n["DrainStrategy"]["IgnoreSystemJobs"], true, "{n}");
    assert!(page(&agent, &node_page).contains("draining (deadline in"));
    // The API's own rule: a draining node cannot be marked eligible.
    let (status, _, body) = post(
        &agent,
        &format!("{node_page}/eligibility"),
        &origin,
        &[("eligibility", "eligible")],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("disable the drain first"), "{body}");
    let (status, _, _) = post(
        &agent,
        &format!("{node_page}/drain"),
        &origin,
        &[("disable", "true")],
    );
    assert_eq!(status, 303);
    let (_, n) = agent.get_json(&format!("/v1/node/{node}"));
    assert_eq!(n["Drain"], false, "{n}");
}

#[test]
fn the_live_stream_fires_when_the_state_moves_past_the_pages_index() {
    let agent = DevAgent::start();
    let jobs = page(&agent, "/ui/jobs");
    let index: u64 = jobs
        .split("data-index=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .and_then(|s| s.parse().ok())
        .expect("the page's data-index");

    let (tx, rx) = mpsc::channel::<String>();
    let url = format!("{}/ui/live?index={index}", agent.addr());
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(None::<Duration>)
            .build()
            .unwrap();
        let Ok(r) = client.get(url).send() else {
            return;
        };
        let _ = tx.send(format!(
            "content-type: {:?}",
            r.headers().get("content-type")
        ));
        for line in std::io::BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream's headers");
    assert!(first.contains("text/event-stream"), "{first}");
    let mut seen = Vec::new();
    let hello = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the hello event");
        seen.push(line.clone());
        if line == "event: hello" {
            break line;
        }
    };
    assert_eq!(hello, "event: hello");

    // A change (a job registered) reaches the open stream as a `change` event with an
    // index past the page's.
    let out = agent.run_job("ui-web.hcl", &web_job(), &["-detach"]);
    assert!(out.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let changed = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no change event within 5 s; saw {seen:?}"));
        seen.push(line.clone());
        if line == "event: change" {
            let data = rx
                .recv_timeout(Duration::from_secs(1))
                .expect("the change's data");
            break data;
        }
    };
    let moved: u64 = changed.trim_start_matches("data: ").parse().unwrap();
    assert!(moved > index, "{moved} <= {index}");
}

const RUN_JOB: &str = r#"
job "ui-run" {
  datacenters = ["dc1"]
  type = "service"

  update {
    max_parallel     = 1
    min_healthy_time = "30s"
    healthy_deadline = "1m"
    progress_deadline = "2m"
  }

  group "main" {
    count = 1

    task "ticker" {
      driver = "raw_exec"
      kill_timeout = "2s"

      config {
        command = "/bin/sh"
        args    = ["-c", "i=0; while true; do echo tick-$i; echo warn-$i 1>&2; i=$((i+1)); sleep 0.2; done"]
      }

      resources {
        cpu    = 20
        memory = 16
      }
    }
  }
}
"#;

/// The text of the first `<textarea id="spec">` of a page, unescaped.
fn textarea(html: &str) -> String {
    let start = html.find("<textarea id=\"spec\"").expect("a spec textarea");
    let open_end = start + html[start..].find('>').unwrap() + 1;
    let close = open_end + html[open_end..].find("</textarea>").unwrap();
    html[open_end..close]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[test]
fn run_plan_edit_deployments_and_logs_from_the_ui() {
    let agent = DevAgent::start();
    wait_for("the dev node", Duration::from_secs(30), || {
        let (_, nodes) = agent.get_json("/v1/nodes");
        nodes.as_array()?.first()?["ID"]
            .as_str()
            .map(str::to_string)
    });
    let origin = agent.addr().to_string();
    let run = page(&agent, "/ui/jobs/run");
    assert!(run.contains("Job specification") && run.contains("Variables"));

    // A parse error says where.
    let broken = "job \"x\" {\n  group \"g\" {\n    count = = 2\n  }\n}\n";
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[("spec", broken), ("op", "plan")],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("The job specification has errors"), "{body}");
    assert!(body.contains("line 3:"), "{body}");

    // Plan a job that cannot fit: the reasons are shown.
    let huge = RUN_JOB.replace("memory = 16", "memory = 100000000");
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[("spec", &huge), ("op", "plan")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Placement failures"), "{body}");
    assert!(body.contains("exhausted memory"), "{body}");

    // Plan, then Run (with the plan's modify index) lands on the job page.
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[("spec", RUN_JOB), ("variables", ""), ("op", "plan")],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("+ Job: &quot;ui-run&quot;"), "{body}");
    assert!(body.contains("All tasks successfully allocated"), "{body}");
    assert!(body.contains(r#"name="modify_index" value="0""#), "{body}");
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        "http://evil.example",
        &[("spec", RUN_JOB), ("op", "run")],
    );
    assert_eq!(status, 403, "{body}");
    let (status, location, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[("spec", RUN_JOB), ("op", "run"), ("modify_index", "0")],
    );
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/jobs/ui-run?done=submitted"),
        "{body}"
    );
    // Running it again as a new job (index 0) is a conflict, not an overwrite.
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[("spec", RUN_JOB), ("op", "run"), ("modify_index", "0")],
    );
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("changed since you opened it"), "{body}");

    let alloc = wait_for(
        "the ui-run allocation running",
        Duration::from_secs(30),
        || {
            let (_, allocs) = agent.get_json("/v1/job/ui-run/allocations");
            let a = allocs.as_array()?.first()?.clone();
            (a["ClientStatus"] == "running").then(|| a["ID"].as_str().unwrap().to_string())
        },
    );

    // Logs: the page follows through the server; the whole file downloads through it too.
    let logs = page(&agent, &format!("/ui/allocations/{alloc}/ticker/logs"));
    assert!(logs.contains("follow=true&amp;origin=end"), "{logs}");
    let text = wait_for("ticks in the log", Duration::from_secs(20), || {
        let r = client()
            .get(format!(
                "{}/v1/client/fs/logs/{alloc}?task=ticker&type=stdout&namespace=default&origin=start&plain=true",
                agent.addr()
            ))
            .send()
            .ok()?;
        let t = r.text().ok()?;
        t.contains("tick-2").then_some(t)
    });
    assert!(text.starts_with("tick-0"), "{text}");
    let stderr = page(
        &agent,
        &format!("/ui/allocations/{alloc}/ticker/logs?type=stderr"),
    );
    assert!(stderr.contains("type=stderr"), "{stderr}");
    // The deployment of version 0 waits 30 s for health: fail it from the job page.
    let dep = wait_for("the ui-run deployment", Duration::from_secs(20), || {
        let (_, d) = agent.get_json("/v1/job/ui-run/deployment");
        d["ID"].as_str().map(str::to_string)
    });
    let job_page = page(&agent, "/ui/jobs/ui-run");
    assert!(
        job_page.contains("Deployments (1, newest first)"),
        "{job_page}"
    );
    let fail_action = format!("/ui/deployments/{dep}/fail");
    assert!(job_page.contains(&fail_action), "{job_page}");
    assert!(job_page.contains("/ui/jobs/ui-run/edit"), "{job_page}");
    let (status, location, body) = post(
        &agent,
        &fail_action,
        &origin,
        &[("job", "ui-run"), ("namespace", "default")],
    );
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/jobs/ui-run?done=deployment-failed"),
        "{body}"
    );
    let (_, d) = agent.get_json(&format!("/v1/deployment/{dep}"));
    assert_eq!(d["Status"], "failed", "{d}");

    // Edit: the definition round-trips; a stale index is reported, the current one runs.
    let edit = page(&agent, "/ui/jobs/ui-run/edit");
    let (_, j) = agent.get_json("/v1/job/ui-run");
    let index = j["JobModifyIndex"].as_u64().unwrap().to_string();
    assert!(
        edit.contains(&format!(r#"name="modify_index" value="{index}""#)),
        "{edit}"
    );
    let spec = textarea(&edit).replace("tick-", "tock-");
    assert!(spec.contains("tock-"), "{spec}");
    let stale = (j["JobModifyIndex"].as_u64().unwrap() - 1).to_string();
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[
            ("spec", &spec),
            ("op", "run"),
            ("modify_index", &stale),
            ("editing", "ui-run"),
        ],
    );
    assert_eq!(status, 409, "{body}");
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[
            ("spec", &spec),
            ("op", "plan"),
            ("modify_index", &index),
            ("editing", "ui-run"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("tock-"), "{body}");
    let (status, location, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[
            ("spec", &spec),
            ("op", "run"),
            ("modify_index", &index),
            ("editing", "ui-run"),
        ],
    );
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/jobs/ui-run?done=submitted"),
        "{body}"
    );
    let job_page = page(&agent, "/ui/jobs/ui-run");
    assert!(job_page.contains("Changes from version 0"), "{job_page}");
    assert!(job_page.contains("tock-"), "{job_page}");

    let r = client()
        .get(format!("{}/ui/allocations/{alloc}/nope/logs", agent.addr()))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

/// GET a UI page, waiting until `what` holds (the state moves asynchronously).
fn page_until(agent: &DevAgent, path: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    wait_for(what, Duration::from_secs(90), || {
        let p = page(agent, path);
        ok(&p).then_some(p)
    })
}

#[test]
fn allocation_actions_files_drain_monitor_and_topology() {
    let agent = DevAgent::start();
    let node = wait_for("the dev node", Duration::from_secs(30), || {
        let (_, nodes) = agent.get_json("/v1/nodes");
        nodes.as_array()?.first()?["ID"]
            .as_str()
            .map(str::to_string)
    });
    let alloc = run_web_job(&agent);
    let origin = agent.addr();
    let a = page_until(
        &agent,
        &format!("/ui/allocations/{alloc}"),
        "a running alloc page",
        |p| p.contains("MHz CPU, ") && p.contains("Using now") && !p.contains("not running"),
    );
    assert!(
        a.contains("Yes, send the signal") && a.contains("SIGUSR1"),
        "{a}"
    );

    // The file browser: the root, a directory, a file, a refusal as a sentence.
    let root = page(&agent, &format!("/ui/allocations/{alloc}/fs"));
    assert!(
        root.contains("path=%2Falloc") && root.contains("path=%2Fsleep"),
        "{root}"
    );
    let secrets = page(
        &agent,
        &format!("/ui/allocations/{alloc}/fs?path=/sleep/secrets"),
    );
    assert!(
        secrets.contains("The agent refuses to show /sleep/secrets"),
        "{secrets}"
    );
    let up = page(&agent, &format!("/ui/allocations/{alloc}/fs?path=/../etc"));
    assert!(up.contains("is not a path the agent accepts"), "{up}");
    let logs = page(
        &agent,
        &format!("/ui/allocations/{alloc}/fs?path=/alloc/logs"),
    );
    assert!(logs.contains("sleep.stdout.0"), "{logs}");
    let file = page(
        &agent,
        &format!("/ui/allocations/{alloc}/fs?path=/alloc/logs/sleep.stdout.0"),
    );
    assert!(
        file.contains("bytes") && file.contains("<pre class=\"file\""),
        "{file}"
    );

    // Restart and signal go through the agent; a cross-origin POST is refused.
    let (s, _, body) = post(
        &agent,
        &format!("/ui/allocations/{alloc}/restart"),
        "http://evil.example",
        &[("task", "")],
    );
    assert_eq!(s, 403, "{body}");
    let (s, loc, body) = post(
        &agent,
        &format!("/ui/allocations/{alloc}/restart"),
        &origin,
        &[("task", "")],
    );
    assert_eq!(
        (s, loc.as_str()),
        (
            303,
            format!("/ui/allocations/{alloc}?done=alloc-restarted").as_str()
        ),
        "{body}"
    );
    // The task may be between runs for a moment after the restart.
    wait_for("the signal to be sent", Duration::from_secs(30), || {
        let (s, loc, _) = post(
            &agent,
            &format!("/ui/allocations/{alloc}/signal"),
            &origin,
            &[("task", "sleep"), ("signal", "SIGUSR2")],
        );
        (s == 303 && loc.ends_with("?done=signalled")).then_some(())
    });
    let (s, _, body) = post(
        &agent,
        &format!("/ui/allocations/{alloc}/signal"),
        &origin,
        &[("task", "sleep"), ("signal", "SIGSEGV")],
    );
    assert_eq!(s, 400, "{body}");

    // Topology.
    let topo = page(&agent, "/ui/topology");
    assert!(
        topo.contains("1 client node ·") && topo.contains("ui-web (20, 16)"),
        "{topo}"
    );

    // The cluster-wide activity list, filtered by status.
    let list = page(&agent, "/ui/allocations?status=running");
    assert!(
        list.contains(&format!("/ui/allocations/{alloc}\"")),
        "{list}"
    );
    assert!(!page(&agent, "/ui/allocations?status=lost").contains(&alloc[..8]));

    // Drain the node from its page: the monitor counts down, then says it is done.
    let (s, _, body) = post(
        &agent,
        &format!("/ui/clients/{node}/drain"),
        &origin,
        &[("deadline", "5s")],
    );
    assert_eq!(s, 303, "{body}");
    let done = page_until(
        &agent,
        &format!("/ui/clients/{node}"),
        "the drain to complete",
        |p| p.contains("Drain complete"),
    );
    assert!(done.contains("no allocation is left to migrate"), "{done}");

    // Stop: the allocation's desired status becomes stop.
    let (s, loc, body) = post(
        &agent,
        &format!("/ui/allocations/{alloc}/stop"),
        &origin,
        &[],
    );
    assert_eq!(s, 303, "{loc} {body}");
    assert!(page(
        &agent,
        &format!("/ui/allocations/{alloc}?done=alloc-stopped")
    )
    .contains("is being stopped"));
}

#[test]
fn run_command_on_the_allocation_page_shows_output_and_exit_code_escaped() {
    let agent = DevAgent::start();
    let alloc = run_web_job(&agent);
    let origin = agent.addr();
    let a = page_until(
        &agent,
        &format!("/ui/allocations/{alloc}"),
        "a running alloc page",
        |p| p.contains("Using now") && !p.contains("not running"),
    );
    assert!(
        a.contains(&format!("action=\"/ui/allocations/{alloc}/exec\"")),
        "{a}"
    );
    let exec = format!("/ui/allocations/{alloc}/exec");
    let cmd = r#"sh -c 'echo "<b>out</b>"; echo "<i>err</i>" >&2; exit 3'"#;
    let (s, _, body) = post(
        &agent,
        &exec,
        "http://evil.example",
        &[("task", "sleep"), ("command", cmd)],
    );
    assert_eq!(s, 403, "{body}");
    // The task may still be starting: the agent says it is not running until it is.
    let body = wait_for("the command to run", Duration::from_secs(30), || {
        let (s, _, body) = post(
            &agent,
            &exec,
            &origin,
            &[("task", "sleep"), ("command", cmd)],
        );
        (s == 200).then_some(body)
    });
    assert!(
        body.contains(r#"Exit code <strong id="exec-exit">3</strong>"#),
        "{body}"
    );
    assert!(body.contains("&lt;b&gt;out&lt;/b&gt;\n</pre>"), "{body}");
    assert!(body.contains("&lt;i&gt;err&lt;/i&gt;\n</pre>"), "{body}");
    assert!(!body.contains("<b>out</b>"), "{body}");
    // The form keeps what was typed, escaped.
    assert!(
        body.contains("value=\"sh -c 'echo &quot;&lt;b&gt;out&lt;/b&gt;&quot;;"),
        "{body}"
    );
    // The same answer as the API's exec endpoint.
    let api: serde_json::Value = client()
        .post(format!(
            "{}/v1/client/allocation/{alloc}/exec",
            agent.addr()
        ))
        .json(&serde_json::json!({"Task": "sleep", "Cmd": ["sh", "-c", "exit 3"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(api["ExitCode"], 3, "{api}");
    // Errors are a status and a sentence: an unknown task, an unclosed quote.
    let (s, _, body) = post(
        &agent,
        &exec,
        &origin,
        &[("task", "nope"), ("command", "true")],
    );
    assert_eq!(s, 404, "{body}");
    assert!(
        body.contains("The command did not run: 404 Not Found: Unknown task &quot;nope&quot;"),
        "{body}"
    );
    let (s, _, body) = post(
        &agent,
        &exec,
        &origin,
        &[("task", "sleep"), ("command", "echo 'open")],
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("is not closed"), "{body}");
}

#[test]
fn editing_a_job_changed_meanwhile_reports_a_conflict_instead_of_overwriting() {
    let agent = DevAgent::start();
    run_web_job(&agent);
    let origin = agent.addr();
    // Open the edit page, as a user would, and change the command.
    let edit = page(&agent, "/ui/jobs/ui-web/edit");
    let (_, j) = agent.get_json("/v1/job/ui-web");
    let opened = j["JobModifyIndex"].as_u64().unwrap().to_string();
    assert!(
        edit.contains(&format!(r#"name="modify_index" value="{opened}""#)),
        "{edit}"
    );
    let mine = textarea(&edit).replace("sleep 3600", "sleep 7200");
    assert!(mine.contains("sleep 7200"), "{mine}");
    // Meanwhile someone else submits a new version with the CLI.
    let theirs = web_job().replace("sleep 3600", "sleep 1800");
    let out = agent.run_job("ui-web-theirs.hcl", &theirs, &["-detach"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, j) = agent.get_json("/v1/job/ui-web");
    assert_eq!(j["Version"], 1, "{j}");
    // Run straight from the edit form (no Plan): refused, nothing overwritten.
    let (status, _, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[
            ("spec", &mine),
            ("variables", ""),
            ("op", "run"),
            ("modify_index", &opened),
            ("editing", "ui-web"),
        ],
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("The job changed since you opened it"),
        "{body}"
    );
    assert!(body.contains("Nothing was overwritten"), "{body}");
    assert!(textarea(&body).contains("sleep 7200"), "the draft was lost");
    let (_, j) = agent.get_json("/v1/job/ui-web");
    assert_eq!(j["Version"], 1, "{j}");
    assert!(j.to_string().contains("sleep 1800"), "{j}");
    assert!(!j.to_string().contains("sleep 7200"), "{j}");
    // Opening the edit page again picks up the new index, and then Run goes through.
    let edit = page(&agent, "/ui/jobs/ui-web/edit");
    let now = j["JobModifyIndex"].as_u64().unwrap().to_string();
    assert!(
        edit.contains(&format!(r#"name="modify_index" value="{now}""#)),
        "{edit}"
    );
    let mine = textarea(&edit).replace("sleep 1800", "sleep 7200");
    let (status, location, body) = post(
        &agent,
        "/ui/jobs/run",
        &origin,
        &[
            ("spec", &mine),
            ("op", "run"),
            ("modify_index", &now),
            ("editing", "ui-web"),
        ],
    );
    assert_eq!(
        (status, location.as_str()),
        (303, "/ui/jobs/ui-web?done=submitted"),
        "{body}"
    );
    let (_, j) = agent.get_json("/v1/job/ui-web");
    assert_eq!(j["Version"], 2, "{j}");
    assert!(j.to_string().contains("sleep 7200"), "{j}");
}

#[test]
fn ui_pages_and_actions_work_on_a_follower() {
    let cluster = common::cluster::Cluster::start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let leader_http = cluster.servers[leader].http();
    let base = cluster.servers[follower].http();
    // Registered through the leader...
    let r = client()
        .put(format!("{leader_http}/v1/jobs"))
        .json(&common::cluster::tiny_job("ui-follower", 1))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text());
    // ...shown by the follower's pages, which read its own replicated state.
    let list = wait_for(
        "the job on the follower's jobs page",
        Duration::from_secs(20),
        || {
            let p = page_at(&base, "/ui/jobs");
            p.contains("/ui/jobs/ui-follower").then_some(p)
        },
    );
    assert!(list.contains("ui-follower"), "{list}");
    let job = page_at(&base, "/ui/jobs/ui-follower");
    assert!(job.contains("ui-follower"), "{job}");
    let servers = page_at(&base, "/ui/servers");
    assert!(servers.contains("This server is a follower"), "{servers}");
    for path in [
        "/ui/clients",
        "/ui/evaluations",
        "/ui/allocations",
        "/ui/topology",
    ] {
        page_at(&base, path);
    }
    // An action posted to the follower is forwarded to the leader.
    let (s, location, body) = post_at(
        &base,
        "/ui/jobs/ui-follower/stop",
        &base,
        &[("namespace", "default")],
    );
    assert_eq!(
        (s, location.as_str()),
        (303, "/ui/jobs/ui-follower?done=stopped"),
        "{body}"
    );
    wait_for(
        "the leader to see the stop",
        Duration::from_secs(20),
        || {
            let j: serde_json::Value = client()
                .get(format!("{leader_http}/v1/job/ui-follower"))
                .send()
                .ok()?
                .json()
                .ok()?;
            (j["Stop"] == true).then_some(())
        },
    );
}
