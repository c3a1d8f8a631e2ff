//! Nomad Variables through the real binary: the `/v1/var(s)` API and `drover var`,
//! check-and-set, restarts, encryption at rest, a three-server cluster, and python-nomad.

mod common;

use common::cluster::Cluster;
use common::*;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

/// A request with a JSON answer (or the plain-text sentence as a string).
fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value, u64) {
    common::call(url, method, None, body)
}

fn items(kv: &[(&str, &str)]) -> Value {
    let m: serde_json::Map<String, Value> = kv
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    json!({ "Items": m })
}

#[test]
fn variables_round_trip_through_the_api_and_the_cli() {
    let agent = DevAgent::start();
    let a = agent.addr();
    // The CLI creates, reads one item and the whole variable.
    let out = agent.cli(&[
        "var",
        "put",
        "nomad/jobs/example/web",
        "user=me",
        "pass=s3cret",
    ]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("Created variable \"nomad/jobs/example/web\""));
    let out = agent.cli(&["var", "get", "-item", "pass", "nomad/jobs/example/web"]);
    assert_eq!(stdout(&out).trim(), "s3cret", "{}", stderr(&out));
    let out = agent.cli(&["var", "get", "nomad/jobs/example/web"]);
    let v: Value = serde_json::from_str(&stdout(&out)).expect("var get prints JSON");
    assert_eq!(v["Items"]["user"], "me");
    assert_eq!(v["Namespace"], "default");
    // The API: the path with its slashes, Items included, the index in the headers.
    let (status, v, index) = call("GET", &format!("{a}/v1/var/nomad/jobs/example/web"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Items"]["pass"], "s3cret");
    assert_eq!(v["ModifyIndex"].as_u64(), Some(index));
    assert!(v["CreateTime"].as_i64().unwrap() > 0);
    // A second variable; the list shows metadata only, filtered by prefix.
    let (status, _, _) = call(
        "PUT",
        &format!("{a}/v1/var/other"),
        Some(items(&[("k", "v")])),
    );
    assert_eq!(status, 200);
    let (_, list, _) = call("GET", &format!("{a}/v1/vars"), None);
    let list = list.as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list
        .iter()
        .all(|v| v.get("Items").is_none() && v["Path"].is_string()));
    let (_, list, _) = call("GET", &format!("{a}/v1/vars?prefix=nomad/jobs"), None);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let out = agent.cli(&["var", "list", "nomad/"]);
    assert!(stdout(&out).contains("nomad/jobs/example/web") && !stdout(&out).contains("other"));
    // Another namespace (which must exist first) is separate; `*` lists all.
    let ns = json!({ "Name": "prod" });
    let (status, _, _) = call("PUT", &format!("{a}/v1/namespace/prod"), Some(ns));
    assert_eq!(status, 200);
    let (status, v, _) = call(
        "PUT",
        &format!("{a}/v1/var/other?namespace=prod"),
        Some(items(&[("k", "prod")])),
    );
    assert_eq!((status, v["Namespace"].as_str()), (200, Some("prod")));
    let (_, list, _) = call("GET", &format!("{a}/v1/vars"), None);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, list, _) = call("GET", &format!("{a}/v1/vars?namespace=*"), None);
    assert_eq!(list.as_array().unwrap().len(), 3);
    // Paging: one at a time, the next token naming the first left out.
    let r = reqwest::blocking::get(format!("{a}/v1/vars?per_page=1")).unwrap();
    let token = r.headers()["X-Nomad-NextToken"]
        .to_str()
        .unwrap()
        .to_string();
    let page: Value = r.json().unwrap();
    assert_eq!(page[0]["Path"], "nomad/jobs/example/web");
    assert_eq!(token, "other");
    let (_, page, _) = call(
        "GET",
        &format!("{a}/v1/vars?per_page=1&next_token={token}"),
        None,
    );
    assert_eq!(page[0]["Path"], "other");
    // A blocking read wakes when the variable changes.
    let (_, before, index) = call("GET", &format!("{a}/v1/var/other"), None);
    let url = format!("{a}/v1/var/other?index={index}&wait=20s");
    let waiter = std::thread::spawn(move || call("GET", &url, None));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the blocking read returned at once");
    call(
        "PUT",
        &format!("{a}/v1/var/other"),
        Some(items(&[("k", "v2")])),
    );
    let (status, after, after_index) = waiter.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(after["Items"]["k"], "v2");
    assert_eq!(after["CreateIndex"], before["CreateIndex"]);
    assert!(after_index > index);
    // Purge; then it is gone (404, and the CLI says so).
    let out = agent.cli(&["var", "purge", "nomad/jobs/example/web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, _, _) = call("GET", &format!("{a}/v1/var/nomad/jobs/example/web"), None);
    assert_eq!(status, 404);
    let out = agent.cli(&["var", "get", "nomad/jobs/example/web"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn check_and_set_conflicts_answer_409_with_the_current_variable_and_change_nothing() {
    let agent = DevAgent::start();
    let url = format!("{}/v1/var/app/config", agent.addr());
    let (status, v, _) = call("PUT", &format!("{url}?cas=0"), Some(items(&[("a", "1")])));
    assert_eq!(status, 200, "{v}");
    let first = v["ModifyIndex"].as_u64().unwrap();
    // Create-only again: 409 with the stored variable as the body.
    let (status, conflict, _) = call("PUT", &format!("{url}?cas=0"), Some(items(&[("a", "2")])));
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["ModifyIndex"].as_u64(), Some(first));
    assert_eq!(conflict["Items"]["a"], "1");
    // The right index wins; a stale one then loses, and so does a stale delete.
    let (status, v, _) = call(
        "PUT",
        &format!("{url}?cas={first}"),
        Some(items(&[("a", "3")])),
    );
    assert_eq!(status, 200);
    let second = v["ModifyIndex"].as_u64().unwrap();
    let (status, _, _) = call(
        "PUT",
        &format!("{url}?cas={first}"),
        Some(items(&[("a", "4")])),
    );
    assert_eq!(status, 409);
    let (status, conflict, _) = call("DELETE", &format!("{url}?cas={first}"), None);
    assert_eq!(status, 409);
    assert_eq!(conflict["ModifyIndex"].as_u64(), Some(second));
    let (_, now, _) = call("GET", &url, None);
    assert_eq!(now["Items"]["a"], "3");
    assert_eq!(now["ModifyIndex"].as_u64(), Some(second));
    // The CLI: put without -check-index only creates; -check-index and -force write.
    let out = agent.cli(&["var", "put", "app/config", "a=5"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("conflict"), "{}", stderr(&out));
    let out = agent.cli(&[
        "var",
        "purge",
        "-check-index",
        &first.to_string(),
        "app/config",
    ]);
    assert!(!out.status.success(), "a stale purge must fail");
    let idx = second.to_string();
    let out = agent.cli(&["var", "put", "-check-index", &idx, "app/config", "a=6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.cli(&["var", "put", "-force", "app/config", "a=7"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.cli(&["var", "get", "-item", "a", "app/config"]);
    assert_eq!(stdout(&out).trim(), "7");
    // A delete at the current index goes.
    let (_, now, _) = call("GET", &url, None);
    let cur = now["ModifyIndex"].as_u64().unwrap();
    let (status, _, _) = call("DELETE", &format!("{url}?cas={cur}"), None);
    assert_eq!(status, 200);
    assert_eq!(call("GET", &url, None).0, 404);
}

#[test]
fn bad_paths_and_items_answer_400_with_a_sentence() {
    let agent = DevAgent::start();
    let a = agent.addr();
    let ok = items(&[("k", "v")]);
    for (path, words) in [
        ("a%20b", "not allowed"),
        ("x/..y", "not allowed"),
        ("a.b", "not allowed"),
        ("a//b", "empty segment"),
        ("a/", "empty segment"),
        ("nomad/secrets", "nomad/jobs"),
        (&"x".repeat(129), "limit is 128"),
    ] {
        let (status, body, _) = call("PUT", &format!("{a}/v1/var/{path}"), Some(ok.clone()));
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body.as_str().unwrap_or("").contains(words),
            "{path}: {body}"
        );
        assert_eq!(call("GET", &format!("{a}/v1/var/{path}"), None).0, 400);
    }
    let (status, body, _) = call("PUT", &format!("{a}/v1/var/x"), Some(json!({"Items": {}})));
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("no items"), "{body}");
    let big = "v".repeat(70_000);
    let (status, body, _) = call("PUT", &format!("{a}/v1/var/x"), Some(items(&[("k", &big)])));
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("64 KiB"), "{body}");
    let (status, body, _) = call("PUT", &format!("{a}/v1/var/x?cas=abc"), Some(ok.clone()));
    assert_eq!(status, 400);
    assert!(body.as_str().unwrap().contains("invalid cas"), "{body}");
    let (status, _, _) = call("PUT", &format!("{a}/v1/var/x"), Some(json!("nope")));
    assert_eq!(status, 400);
    // Nothing was stored by any of them.
    let (_, list, _) = call("GET", &format!("{a}/v1/vars?namespace=*"), None);
    assert_eq!(list, json!([]));
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push((p, bytes));
            }
        }
    }
    out
}

#[test]
fn a_variable_survives_a_restart_and_its_plaintext_is_never_on_disk() {
    const SECRET: &str = "plaintext-sentinel-7f3a9c1e";
    // A small snapshot threshold: the variable also goes through a snapshot.
    let mut agent = DevAgent::start_with_env(&[("DROVER_SNAPSHOT_THRESHOLD", "5")]);
    let a = agent.addr();
    for i in 0..8 {
        let value = format!("{SECRET}-{i}");
        let (status, v, _) = call(
            "PUT",
            &format!("{a}/v1/var/db/creds"),
            Some(items(&[("password", &value)])),
        );
        assert_eq!(status, 200, "{v}");
    }
    agent.restart();
    let a = agent.addr();
    let (status, v, _) = call("GET", &format!("{a}/v1/var/db/creds"), None);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Items"]["password"], format!("{SECRET}-7"));
    // It came back through a snapshot (taken past the threshold), not only the log.
    assert!(agent.log().contains("snapshot=Some("), "{}", agent.log());
    // Stop it (files flushed), then look at every byte of the data dir.
    agent.terminate();
    let files = files_under(&agent.data_dir());
    assert!(
        files
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("sled")
                || p.to_string_lossy().contains("raft"))
    );
    // The control: the variable's path (metadata, stored in the clear) is found, so the
    // search does look at the bytes the log and the snapshots hold.
    let marker = b"db/creds";
    assert!(
        files
            .iter()
            .any(|(_, b)| b.windows(marker.len()).any(|w| w == marker)),
        "the variable's path is nowhere in the data dir: the search looks at the wrong files"
    );
    for (path, bytes) in &files {
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the plaintext is in {}",
            path.display()
        );
    }
    // The keyring holds one owner-only key file.
    let keys: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("keyring")))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mode = std::fs::metadata(&keys[0].0).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
}

#[test]
fn a_variable_written_via_one_server_is_read_via_another() {
    let cluster = Cluster::start(&[]);
    let leader = cluster.wait_leader(Duration::from_secs(30));
    let follower = (leader + 1) % 3;
    let via_follower = cluster.servers[follower].http();
    // Written through a follower (forwarded to the leader, which seals it).
    let (status, v, _) = call(
        "PUT",
        &format!("{via_follower}/v1/var/shared/thing"),
        Some(items(&[("color", "teal")])),
    );
    assert_eq!(status, 200, "{v}\n{}", cluster.logs());
    // Every server opens it itself (`?stale` answers locally, no forwarding).
    for s in &cluster.servers {
        let got = wait_for(
            "the variable on every server",
            Duration::from_secs(15),
            || s.get_stale("/v1/var/shared/thing"),
        );
        assert_eq!(got["Items"]["color"], "teal", "{}", s.name);
    }
    let other = cluster.servers[(leader + 2) % 3].http();
    let (status, v, _) = call("GET", &format!("{other}/v1/var/shared/thing"), None);
    assert_eq!((status, &v["Items"]["color"]), (200, &json!("teal")));
}

const PY_SCRIPT: &str = r#"
import sys, nomad
n = nomad.Nomad(host="127.0.0.1", port=int(sys.argv[1]), timeout=10)
n.variable.create_variable("a/b", {"Items": {"k": "v"}})
print(n.variable.get_variable("a/b"))
assert n.variable.get_variable("a/b")["Items"]["k"] == "v"
assert len(n.variables.get_variables()) == 1
assert "a/b" in n.variables and "a/b" in n.variable and "zz" not in n.variable
var = n.variable.create_variable("with_cas", {"Items": {"u": "p"}}, cas=0)
try:
    n.variable.delete_variable("with_cas", cas=var["ModifyIndex"] + 1)
    raise SystemExit("expected a conflict")
except nomad.api.exceptions.VariableConflict:
    pass
n.variable.delete_variable("with_cas", cas=var["ModifyIndex"])
n.variable.delete_variable("a/b", namespace="default")
assert len(n.variables.get_variables()) == 0
print("python-nomad variables ok")
"#;

#[test]
fn python_nomad_creates_reads_lists_and_deletes_variables() {
    let Some(python) = python3() else { return };
    let agent = DevAgent::start();
    let out = Command::new(python)
        .args(["-c", PY_SCRIPT, &agent.port.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python-nomad failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stdout(&out).contains("python-nomad variables ok"));
}
