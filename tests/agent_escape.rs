//! A hostile task against the agent's filesystem boundary, through the real binary
//! (`drover agent -dev`): links planted by a raw_exec task do not make the fs and logs
//! API reveal host files, `secrets/` is refused, and artifacts cannot write outside the
//! task directory (an archive's link to `/`, or a link the group planted before the
//! artifact's destination is resolved).

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// What a host file looks like; it must never appear in an answer.
const HOST_SECRET: &str = "host-only-bytes-4f1c9e";

fn put_job(agent: &DevAgent, job: serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .put(format!("{}/v1/jobs", agent.addr()))
        .json(&serde_json::json!({ "Job": job }))
        .send()
        .expect("PUT /v1/jobs");
    let status = r.status();
    assert!(
        status.is_success(),
        "register: {status} {}",
        r.text().unwrap_or_default()
    );
}

fn first_alloc(agent: &DevAgent, job: &str) -> String {
    wait_for("an allocation", Duration::from_secs(30), || {
        let (_, v) = agent.get_json(&format!("/v1/job/{job}/allocations"));
        v.as_array()?.first()?["ID"].as_str().map(str::to_string)
    })
}

fn task_events(agent: &DevAgent, alloc: &str, task: &str) -> Vec<(String, String)> {
    let (_, v) = agent.get_json(&format!("/v1/allocation/{alloc}"));
    v["TaskStates"][task]["Events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .map(|e| {
                    (
                        e["Type"].as_str().unwrap_or("").to_string(),
                        e["DisplayMessage"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn raw_exec(name: &str, script: &str) -> serde_json::Value {
    serde_json::json!({
        "Name": name,
        "Driver": "raw_exec",
        "Config": { "command": "/bin/sh", "args": ["-c", script] },
        "Resources": { "CPU": 50, "MemoryMB": 32 },
    })
}

fn batch_job(id: &str, tasks: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({
        "ID": id,
        "Name": id,
        "Type": "batch",
        "Datacenters": ["dc1"],
        "TaskGroups": [{
            "Name": "g",
            "Count": 1,
            "RestartPolicy": { "Attempts": 0, "Mode": "fail" },
            "ReschedulePolicy": { "Attempts": 0, "Unlimited": false },
            "Tasks": tasks,
        }],
    })
}

/// GET on the agent: status and body text.
fn get(agent: &DevAgent, path: &str) -> (u16, String) {
    let r = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .get(format!("{}{path}", agent.addr()))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status().as_u16(), r.text().unwrap_or_default())
}

#[test]
fn links_a_task_plants_do_not_reveal_host_files_through_fs_and_logs() {
    let agent = DevAgent::start();
    let host_file = agent.dir.path().join("host-secret.txt");
    std::fs::write(&host_file, HOST_SECRET).unwrap();
    let host = host_file.display();
    // Plants every link, a FIFO and a secret, replaces its own log file with a link to
    // the host file, then says it is ready and waits.
    let script = format!(
        "echo visible > local/ok.txt; \
         ln -s / local/hostroot; ln -s {host} local/x; \
         echo token-value > secrets/token; ln -s ../secrets/token local/inside; \
         mkfifo local/fifo; \
         rm -f \"$NOMAD_ALLOC_DIR/logs/web.stdout.0\"; ln -s {host} \"$NOMAD_ALLOC_DIR/logs/web.stdout.0\"; \
         touch local/ready; exec sleep 600"
    );
    put_job(&agent, batch_job("planter", vec![raw_exec("web", &script)]));
    let alloc = first_alloc(&agent, "planter");
    let ready = agent
        .data_dir()
        .join(format!("client/alloc/{alloc}/web/local/ready"));
    wait_for(
        "the task to plant its links",
        Duration::from_secs(30),
        || ready.exists().then_some(()),
    );
    let fs = |op: &str, path: &str| get(&agent, &format!("/v1/client/fs/{op}/{alloc}?path={path}"));

    // The control: a plain file is served.
    assert_eq!(
        fs("cat", "web/local/ok.txt"),
        (200, "visible\n".to_string())
    );

    let host_in_root = format!("web/local/hostroot{host}");
    for (op, path) in [
        ("cat", host_in_root.as_str()),
        ("cat", "web/local/x"),
        ("readat", "web/local/x"),
        ("stat", "web/local/x"),
        ("ls", "web/local/hostroot"),
        ("ls", "web/local/hostroot/etc"),
    ] {
        let (status, body) = fs(op, path);
        assert_eq!(status, 403, "{op} {path}: {body}");
        assert!(
            !body.contains(HOST_SECRET),
            "{op} {path} revealed the host file"
        );
        assert!(body.contains("symbolic link"), "{op} {path}: {body}");
    }
    for path in [
        "web/secrets/token",
        "web/SECRETS/token",
        "web/local/inside",
        "web/secrets",
    ] {
        let op = if path == "web/secrets" { "ls" } else { "cat" };
        let (status, body) = fs(op, path);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(
            body.contains("Reading secret file prohibited"),
            "{path}: {body}"
        );
        assert!(!body.contains("token-value"));
    }
    for path in ["../../../etc/passwd", "web/../../x"] {
        let (status, body) = fs("cat", path);
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("'..'"), "{body}");
    }
    // A FIFO is refused at once rather than hanging the request.
    let (status, body) = fs("cat", "web/local/fifo");
    assert_eq!(status, 400, "{body}");
    // The listing shows the link as a link.
    let (status, body) = fs("ls", "web/local");
    assert_eq!(status, 200, "{body}");
    let entries: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let link = entries.iter().find(|e| e["Name"] == "hostroot").unwrap();
    assert!(
        link["FileMode"].as_str().unwrap().starts_with('L'),
        "{link}"
    );

    // The log file is now a link to the host file: not read, and not written through.
    let (status, body) = get(
        &agent,
        &format!("/v1/client/fs/logs/{alloc}?task=web&type=stdout&plain=true"),
    );
    assert!(
        !body.contains(HOST_SECRET),
        "logs revealed the host file ({status})"
    );
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), HOST_SECRET);
}

#[test]
fn a_restarted_task_cannot_make_the_agent_append_its_log_to_a_host_file() {
    let agent = DevAgent::start();
    let host_file = agent.dir.path().join("host-log-target.txt");
    std::fs::write(&host_file, HOST_SECRET).unwrap();
    // First run: swap the live log file for a link to the host file and fail. The
    // restart opens the log again; the old agent appended the second run's output
    // to the host file through the link.
    let script = format!(
        "L=\"$NOMAD_ALLOC_DIR/logs/web.stdout.0\"; \
         if [ -L \"$L\" ]; then echo second-run; exit 0; fi; \
         rm -f \"$L\"; ln -s {} \"$L\"; exit 1",
        host_file.display()
    );
    let mut job = batch_job("log-link", vec![raw_exec("web", &script)]);
    job["TaskGroups"][0]["RestartPolicy"] = serde_json::json!({
        "Attempts": 1, "Interval": 600_000_000_000i64, "Delay": 100_000_000i64, "Mode": "fail"
    });
    put_job(&agent, job);
    let alloc = first_alloc(&agent, "log-link");
    let events = wait_dead(&agent, &alloc, "web");
    let failure = events
        .iter()
        .find(|(k, _)| k == "Driver Failure")
        .unwrap_or_else(|| panic!("the restart was not refused: {events:?}"));
    assert!(failure.1.contains("symbolic link"), "{}", failure.1);
    assert_eq!(std::fs::read_to_string(&host_file).unwrap(), HOST_SECRET);
}

/// A tiny HTTP/1.1 server: `path -> body`, one request per connection, until dropped.
struct FileServer {
    addr: String,
    _thread: std::thread::JoinHandle<()>,
}

fn serve(files: Vec<(&'static str, Vec<u8>)>) -> FileServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("").to_string();
            let (status, body) = files
                .iter()
                .find(|(p, _)| *p == path)
                .map(|(_, b)| ("200 OK", b.clone()))
                .unwrap_or(("404 Not Found", b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes());
            let _ = conn.write_all(&body);
        }
    });
    FileServer {
        addr,
        _thread: thread,
    }
}

fn tar_with_symlink(name: &str, target: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, name, target).unwrap();
    b.into_inner().unwrap()
}

fn wait_dead(agent: &DevAgent, alloc: &str, task: &str) -> Vec<(String, String)> {
    wait_for(
        &format!("task {task} to fail"),
        Duration::from_secs(60),
        || {
            let (_, v) = agent.get_json(&format!("/v1/allocation/{alloc}"));
            let st = &v["TaskStates"][task];
            (st["State"] == "dead").then_some(())?;
            Some(task_events(agent, alloc, task))
        },
    )
}

#[test]
fn artifacts_cannot_write_through_a_symlink_out_of_the_task_dir() {
    let agent = DevAgent::start();
    let host_dir = agent.dir.path().join("host-dir");
    std::fs::create_dir(&host_dir).unwrap();
    let server = serve(vec![
        ("/plant.tar", tar_with_symlink("evil", &host_dir)),
        ("/payload.txt", b"payload".to_vec()),
    ]);
    let artifact = |src: &str, dest: &str| serde_json::json!({ "GetterSource": format!("{}{src}", server.addr), "RelativeDest": dest });

    // 1. The symlink-then-write escape inside one task: the first archive plants
    //    `local/evil -> <host dir>`, the second artifact's destination goes through it.
    let mut t = raw_exec("fetcher", "exit 0");
    t["Artifacts"] = serde_json::json!([
        artifact("/plant.tar", "local/"),
        artifact("/payload.txt", "local/evil/"),
    ]);
    put_job(&agent, batch_job("two-artifacts", vec![t]));
    let alloc = first_alloc(&agent, "two-artifacts");
    let events = wait_dead(&agent, &alloc, "fetcher");
    let failed = events
        .iter()
        .find(|(k, _)| k == "Failed Artifact Download")
        .unwrap_or_else(|| panic!("no artifact failure: {events:?}"));
    assert!(
        failed.1.contains("symbolic link") && failed.1.contains("outside"),
        "{}",
        failed.1
    );
    assert!(events.iter().all(|(k, _)| k != "Started"), "{events:?}");

    // 2. The link is already there (a prestart task of the group planted it): the
    //    destination is refused when it is resolved, before anything is downloaded.
    let planter = {
        let mut p = raw_exec(
            "planter",
            &format!(
                "mkdir -p \"$NOMAD_ALLOC_DIR/../main/local\" && ln -s {} \"$NOMAD_ALLOC_DIR/../main/local/evil\"",
                host_dir.display()
            ),
        );
        p["Lifecycle"] = serde_json::json!({ "Hook": "prestart", "Sidecar": false });
        p
    };
    let mut main = raw_exec("main", "exit 0");
    main["Artifacts"] = serde_json::json!([artifact("/payload.txt", "local/evil/tmp")]);
    put_job(&agent, batch_job("planted-link", vec![planter, main]));
    let alloc = first_alloc(&agent, "planted-link");
    let events = wait_dead(&agent, &alloc, "main");
    let failed = events
        .iter()
        .find(|(k, _)| k == "Failed Artifact Download")
        .unwrap_or_else(|| panic!("no artifact failure: {events:?}"));
    assert!(
        failed.1.contains("local/evil/tmp") && failed.1.contains("symbolic link"),
        "{}",
        failed.1
    );

    // Nothing reached the host directory either way.
    let left: Vec<_> = std::fs::read_dir(&host_dir).unwrap().flatten().collect();
    assert!(left.is_empty(), "written outside the task dir: {left:?}");
}

#[test]
fn archives_unpack_unprivileged_without_setuid_bits() {
    let agent = DevAgent::start();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o4755);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, "bin/tool", &b"abc"[..]).unwrap();
    let server = serve(vec![("/tool.tar", b.into_inner().unwrap())]);
    let mut t = raw_exec("fetch", "exec sleep 600");
    t["Artifacts"] = serde_json::json!([{ "GetterSource": format!("{}/tool.tar", server.addr) }]);
    put_job(&agent, batch_job("setuid", vec![t]));
    let alloc = first_alloc(&agent, "setuid");
    let tool = agent
        .data_dir()
        .join(format!("client/alloc/{alloc}/fetch/local/bin/tool"));
    let meta = wait_for(
        "the artifact to be unpacked",
        Duration::from_secs(30),
        || std::fs::metadata(&tool).ok(),
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o7777, 0o755, "setuid kept");
    if nix::unistd::geteuid().is_root() {
        // Unpacked as nobody, not as the root agent.
        let nobody = nix::unistd::User::from_name("nobody")
            .unwrap()
            .map(|u| u.uid.as_raw())
            .unwrap_or(65534);
        assert_eq!(meta.uid(), nobody);
    }
}
