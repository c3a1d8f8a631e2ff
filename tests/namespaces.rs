//! Namespaces through the real binary: `/v1/namespace(s)` in Nomad's shapes, `default`
//! always there and never deleted, a namespace held by a live job or a variable, jobs
//! and variables refused in a namespace that does not exist, what a token scoped to one
//! namespace sees with ACLs on, and `drover namespace`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A raw_exec service job in `ns` that sleeps.
fn job_body(id: &str, ns: &str) -> Value {
    json!({ "Job": {
        "ID": id, "Name": id, "Namespace": ns, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "KillTimeout": 1_000_000_000u64,
            "Config": { "command": "/bin/sleep", "args": ["300"] },
            "Resources": { "CPU": 20, "MemoryMB": 16 }
        }]}]
    }})
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|n| n["Name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn namespaces_round_trip_in_nomads_shapes_and_default_cannot_be_deleted() {
    let agent = DevAgent::start();
    let a = agent.addr();
    // `default` exists from the start.
    let (s, list, index) = call(&format!("{a}/v1/namespaces"), "GET", None, None);
    assert_eq!(s, 200, "{list}");
    assert!(index > 0);
    assert_eq!(names(&list), ["default"]);
    assert_eq!(list[0]["Description"], "Default shared namespace");
    let (s, v, _) = call(&format!("{a}/v1/namespace/nope"), "GET", None, None);
    assert_eq!((s, v.as_str()), (404, Some("namespace not found")));

    // Create by name in the URL, and by name in the body.
    let body = json!({ "Name": "team-a", "Description": "Team A", "Meta": { "owner": "a" } });
    let (s, v, created) = call(&format!("{a}/v1/namespace/team-a"), "PUT", None, Some(body));
    assert_eq!(s, 200, "{v}");
    assert!(created > index);
    let (s, _, _) = call(
        &format!("{a}/v1/namespace"),
        "POST",
        None,
        Some(json!({ "Name": "team-b" })),
    );
    assert_eq!(s, 200);
    let (s, ns, _) = call(&format!("{a}/v1/namespace/team-a"), "GET", None, None);
    assert_eq!(s, 200, "{ns}");
    for k in [
        "Name",
        "Description",
        "Quota",
        "Capabilities",
        "Meta",
        "NodePoolConfiguration",
        "CreateIndex",
        "ModifyIndex",
    ] {
        assert!(ns.get(k).is_some(), "{k} missing: {ns}");
    }
    assert_eq!(
        (
            &ns["Description"],
            &ns["Meta"]["owner"],
            ns["CreateIndex"].as_u64()
        ),
        (&json!("Team A"), &json!("a"), Some(created))
    );
    assert_eq!(ns["ModifyIndex"], ns["CreateIndex"]);

    // An update keeps the create index.
    let (s, _, updated) = call(
        &format!("{a}/v1/namespace/team-a"),
        "POST",
        None,
        Some(json!({ "Name": "team-a", "Description": "Team A, again" })),
    );
    assert_eq!(s, 200);
    let (_, ns, _) = call(&format!("{a}/v1/namespace/team-a"), "GET", None, None);
    assert_eq!(ns["Description"], "Team A, again");
    assert_eq!(
        (ns["CreateIndex"].as_u64(), ns["ModifyIndex"].as_u64()),
        (Some(created), Some(updated))
    );

    // Refused writes are 400s with a sentence, and store nothing.
    for (path, body, says) in [
        (
            "/v1/namespace/team-a",
            json!({ "Name": "other" }),
            "does not match",
        ),
        (
            "/v1/namespace",
            json!({ "Name": "bad name" }),
            "invalid namespace name",
        ),
        (
            "/v1/namespace",
            json!({ "Name": "long", "Description": "d".repeat(257) }),
            "at most 256",
        ),
        (
            "/v1/namespace",
            json!({ "Description": "no name" }),
            "needs a name",
        ),
    ] {
        let (s, v, _) = call(&format!("{a}{path}"), "PUT", None, Some(body));
        assert_eq!(s, 400, "{path}: {v}");
        assert!(v.as_str().unwrap_or_default().contains(says), "{path}: {v}");
    }
    let (_, list, _) = call(&format!("{a}/v1/namespaces"), "GET", None, None);
    assert_eq!(names(&list), ["default", "team-a", "team-b"]);
    let (_, list, _) = call(&format!("{a}/v1/namespaces?prefix=team"), "GET", None, None);
    assert_eq!(names(&list), ["team-a", "team-b"]);

    // A blocking list wakes when a namespace is written.
    let (_, _, index) = call(&format!("{a}/v1/namespaces"), "GET", None, None);
    let url = format!("{a}/v1/namespaces?index={index}&wait=20s");
    let waiter = std::thread::spawn(move || call(&url, "GET", None, None));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the blocking list returned at once");
    call(
        &format!("{a}/v1/namespace/team-c"),
        "PUT",
        None,
        Some(json!({})),
    );
    let (s, list, woke_at) = waiter.join().unwrap();
    assert_eq!(s, 200);
    assert!(woke_at > index);
    assert!(names(&list).contains(&"team-c".to_string()));

    // `default` stays; others go; a missing one is a 404.
    let (s, v, _) = call(&format!("{a}/v1/namespace/default"), "DELETE", None, None);
    assert_eq!(
        (s, v.as_str()),
        (400, Some("the default namespace cannot be deleted"))
    );
    let (s, _, _) = call(&format!("{a}/v1/namespace/team-b"), "DELETE", None, None);
    assert_eq!(s, 200);
    let (s, _, _) = call(&format!("{a}/v1/namespace/team-b"), "GET", None, None);
    assert_eq!(s, 404);
    let (s, v, _) = call(&format!("{a}/v1/namespace/team-b"), "DELETE", None, None);
    assert_eq!(s, 404, "{v}");
    let (s, v, _) = call(&format!("{a}/v1/namespace/default"), "GET", None, None);
    assert_eq!((s, &v["Name"]), (200, &json!("default")));
}

#[test]
fn jobs_and_variables_in_a_missing_namespace_are_refused_and_a_held_namespace_stays() {
    let agent = DevAgent::start();
    let a = agent.addr();
    agent.wait_node_ready();

    // Nothing is registered in a namespace that does not exist.
    let (s, v, _) = call(
        &format!("{a}/v1/jobs"),
        "PUT",
        None,
        Some(job_body("ghostly", "ghost")),
    );
    assert_eq!(
        (s, v.as_str()),
        (
            400,
            Some("job \"ghostly\" is in nonexistent namespace \"ghost\"")
        )
    );
    let (s, v, _) = call(
        &format!("{a}/v1/job/ghostly/plan"),
        "PUT",
        None,
        Some(job_body("ghostly", "ghost")),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v
        .as_str()
        .unwrap()
        .contains("nonexistent namespace \"ghost\""));
    let (_, jobs, _) = call(&format!("{a}/v1/jobs?namespace=*"), "GET", None, None);
    assert_eq!(jobs, json!([]));
    let (s, v, _) = call(
        &format!("{a}/v1/var/app/db?namespace=ghost"),
        "PUT",
        None,
        Some(json!({ "Items": { "k": "v" } })),
    );
    assert_eq!(
        (s, v.as_str()),
        (
            400,
            Some("variable \"app/db\" is in nonexistent namespace \"ghost\"")
        )
    );
    let (_, vars, _) = call(&format!("{a}/v1/vars?namespace=*"), "GET", None, None);
    assert_eq!(vars, json!([]));

    // A job in an existing namespace runs, and holds the namespace while it lives.
    let ns = json!({ "Name": "team-a" });
    assert_eq!(
        call(&format!("{a}/v1/namespace/team-a"), "PUT", None, Some(ns)).0,
        200
    );
    let (s, v, _) = call(
        &format!("{a}/v1/jobs"),
        "PUT",
        None,
        Some(job_body("web", "team-a")),
    );
    assert_eq!(s, 200, "{v}");
    wait_for("web to run in team-a", Duration::from_secs(30), || {
        let (_, allocs, _) = call(
            &format!("{a}/v1/job/web/allocations?namespace=team-a"),
            "GET",
            None,
            None,
        );
        allocs
            .as_array()?
            .iter()
            .any(|x| x["ClientStatus"] == "running")
            .then_some(())
    });
    let (s, v, _) = call(&format!("{a}/v1/namespace/team-a"), "DELETE", None, None);
    assert_eq!(s, 409, "{v}");
    let msg = v.as_str().unwrap();
    assert!(msg.contains("team-a") && msg.contains("\"web\""), "{msg}");
    assert_eq!(
        call(&format!("{a}/v1/namespace/team-a"), "GET", None, None).0,
        200
    );

    // Purged, the job no longer holds it; a variable does, until it is deleted.
    let (s, _, _) = call(
        &format!("{a}/v1/job/web?namespace=team-a&purge=true"),
        "DELETE",
        None,
        None,
    );
    assert_eq!(s, 200);
    let (s, _, _) = call(
        &format!("{a}/v1/var/app/db?namespace=team-a"),
        "PUT",
        None,
        Some(json!({ "Items": { "k": "v" } })),
    );
    assert_eq!(s, 200);
    let (s, v, _) = call(&format!("{a}/v1/namespace/team-a"), "DELETE", None, None);
    assert_eq!(s, 409, "{v}");
    assert!(v.as_str().unwrap().contains("variable \"app/db\""), "{v}");
    let (s, _, _) = call(
        &format!("{a}/v1/var/app/db?namespace=team-a"),
        "DELETE",
        None,
        None,
    );
    assert_eq!(s, 200);
    let (s, v, _) = call(&format!("{a}/v1/namespace/team-a"), "DELETE", None, None);
    assert_eq!(s, 200, "{v}");
    let (_, list, _) = call(&format!("{a}/v1/namespaces"), "GET", None, None);
    assert_eq!(names(&list), ["default"]);
}

fn bootstrap(addr: &str) -> String {
    let (s, t, _) = call(&format!("{addr}/v1/acl/bootstrap"), "PUT", None, None);
    assert_eq!(s, 200, "{t}");
    t["SecretID"].as_str().unwrap().to_string()
}

/// A client token holding one new policy with `rules`.
fn client_token(addr: &str, mgmt: &str, name: &str, rules: &str) -> String {
    let body = json!({ "Name": name, "Rules": rules });
    let url = format!("{addr}/v1/acl/policy/{name}");
    let (s, v, _) = call(&url, "PUT", Some(mgmt), Some(body));
    assert_eq!(s, 200, "policy {name}: {v}");
    let body = json!({ "Name": name, "Type": "client", "Policies": [name] });
    let (s, t, _) = call(
        &format!("{addr}/v1/acl/token"),
        "POST",
        Some(mgmt),
        Some(body),
    );
    assert_eq!(s, 200, "token {name}: {t}");
    t["SecretID"].as_str().unwrap().to_string()
}

#[test]
fn a_token_scoped_to_one_namespace_sees_only_that_namespace() {
    let agent = DevAgent::start_acl(None);
    let a = agent.addr();
    let mgmt = bootstrap(&a);
    for ns in ["team-a", "team-b"] {
        let (s, v, _) = call(
            &format!("{a}/v1/namespace/{ns}"),
            "PUT",
            Some(&mgmt),
            Some(json!({ "Name": ns })),
        );
        assert_eq!(s, 200, "{v}");
        let (s, v, _) = call(
            &format!("{a}/v1/jobs"),
            "PUT",
            Some(&mgmt),
            Some(job_body(&format!("{ns}-web"), ns)),
        );
        assert_eq!(s, 200, "{v}");
    }
    let node = wait_for("both jobs to be placed", Duration::from_secs(30), || {
        let (_, allocs, _) = call(
            &format!("{a}/v1/allocations?namespace=*"),
            "GET",
            Some(&mgmt),
            None,
        );
        let allocs = allocs.as_array()?;
        (allocs.len() == 2).then(|| allocs[0]["NodeID"].as_str().unwrap().to_string())
    });

    let team_a = client_token(
        &a,
        &mgmt,
        "team-a",
        r#"namespace "team-a" { policy = "read" }
           node { policy = "read" }"#,
    );
    let with_default = client_token(
        &a,
        &mgmt,
        "team-a-and-default",
        r#"namespace "team-a" { policy = "read" }
           namespace "default" { policy = "read" }"#,
    );
    let get = |path: &str, token: &str| call(&format!("{a}{path}"), "GET", Some(token), None);

    let (s, list, _) = get("/v1/namespaces", &team_a);
    assert_eq!((s, names(&list)), (200, vec!["team-a".to_string()]));
    let (_, list, _) = get("/v1/namespaces", &with_default);
    assert_eq!(names(&list), ["default", "team-a"]);
    let (_, list, _) = get("/v1/namespaces", &mgmt);
    assert_eq!(names(&list), ["default", "team-a", "team-b"]);
    assert_eq!(get("/v1/namespace/team-a", &team_a).0, 200);
    assert_eq!(get("/v1/namespace/team-b", &team_a).0, 403);

    let (s, jobs, _) = get("/v1/jobs?namespace=*", &team_a);
    assert_eq!(s, 200, "{jobs}");
    let ids: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["ID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["team-a-web"]);
    assert_eq!(get("/v1/job/team-a-web?namespace=team-a", &team_a).0, 200);
    let (s, v, _) = get("/v1/job/team-b-web?namespace=team-b", &team_a);
    assert_eq!((s, v.as_str()), (403, Some("Permission denied")));

    // A node's allocations: only those of namespaces the token may read jobs in.
    let path = format!("/v1/node/{node}/allocations");
    let (s, allocs, _) = get(&path, &team_a);
    assert_eq!(s, 200, "{allocs}");
    let seen: Vec<&str> = allocs
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Namespace"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["team-a"]);
    let (_, allocs, _) = get(&path, &mgmt);
    assert_eq!(allocs.as_array().unwrap().len(), 2);

    // Only a management token writes namespaces; a refused write stores nothing.
    for (method, path) in [
        ("PUT", "/v1/namespace/team-c"),
        ("POST", "/v1/namespace"),
        ("DELETE", "/v1/namespace/team-a"),
    ] {
        let body = (method != "DELETE").then(|| json!({ "Name": "team-c" }));
        let (s, v, _) = call(&format!("{a}{path}"), method, Some(&team_a), body);
        assert_eq!((s, v.as_str()), (403, Some("Permission denied")), "{path}");
    }
    assert_eq!(get("/v1/namespace/team-c", &mgmt).0, 404);
    assert_eq!(get("/v1/namespace/team-a", &mgmt).0, 200);
}

#[test]
fn the_cli_applies_lists_shows_and_deletes_namespaces() {
    let agent = DevAgent::start();
    let out = agent.cli(&[
        "namespace",
        "apply",
        "-description",
        "Team A",
        "-meta",
        "owner=alice",
        "team-a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "Successfully applied namespace \"team-a\"!"
    );

    // Flags change only what they name.
    let out = agent.cli(&["namespace", "apply", "-description", "Team A2", "team-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = agent.cli(&["namespace", "status", "team-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("Name        = team-a\nDescription = Team A2\nQuota       = <none>"),
        "{text}"
    );
    assert!(text.contains("Metadata\nowner = alice"), "{text}");

    // A specification file, as Nomad's `namespace apply` takes one.
    let spec = agent.dir.path().join("team-b.hcl");
    std::fs::write(
        &spec,
        "name = \"team-b\"\ndescription = \"From a file\"\nmeta {\n  tier = \"gold\"\n}\n",
    )
    .unwrap();
    let out = agent.cli(&["namespace", "apply", spec.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = agent.cli(&["namespace", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        lines,
        [
            "Name Description",
            "default Default shared namespace",
            "team-a Team A2",
            "team-b From a file",
        ]
    );
    let out = agent.cli(&["namespace", "list", "-json"]);
    let list: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(list[2]["Meta"]["tier"], "gold");

    let out = agent.cli(&["namespace", "delete", "team-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "Successfully deleted namespace \"team-a\"!"
    );
    let out = agent.cli(&["namespace", "status", "team-a"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = agent.cli(&["namespace", "delete", "default"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the default namespace cannot be deleted"),
        "{}",
        stderr(&out)
    );
    let out = agent.cli(&["namespace", "apply", "-description", "x", "bad*name"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid namespace name"),
        "{}",
        stderr(&out)
    );
}
