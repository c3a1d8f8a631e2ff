//! An in-process fuzzer over every route of both listeners: a real single-server `Server`
//! (Raft and sled on a temp dir) behind the public and the RPC routers, driven with
//! `tower::ServiceExt::oneshot` by random methods, paths built from the route table (random
//! ids and prefixes, unicode, `..`, broken escapes), random query strings (huge, negative,
//! NaN numbers and durations) and random bodies (garbage, random JSON, near-valid jobs).
//!
//! Asserts: no panic, no 5xx but 503 (and 502 from the `/v1/client/*` relay when a node's
//! address does not answer), every 4xx body a sentence. Seeded and reproducible: the seed
//! is printed; `DROVER_FUZZ_SEED=<seed>` replays it and `DROVER_FUZZ_REQUESTS=<n>` sets the
//! number of requests (30,000 by default).

use axum::body::Body;
use axum::http::{Method, Request};
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// Every route: (methods it answers, path with `{id}` / `{*rest}` holes).
const ROUTES: &[(&[&str], &str)] = &[
    (&["GET", "PUT", "POST"], "/v1/jobs"),
    (&["PUT", "POST"], "/v1/jobs/parse"),
    (&["PUT", "POST"], "/v1/validate/job"),
    (&["GET", "PUT", "POST", "DELETE"], "/v1/job/{id}"),
    (&["GET"], "/v1/job/{id}/allocations"),
    (&["GET"], "/v1/job/{id}/evaluations"),
    (&["GET"], "/v1/job/{id}/summary"),
    (&["GET"], "/v1/job/{id}/versions"),
    (&["PUT", "POST"], "/v1/job/{id}/plan"),
    (&["GET"], "/v1/allocations"),
    (&["GET"], "/v1/allocation/{id}"),
    (&["PUT", "POST"], "/v1/allocation/{id}/stop"),
    (&["GET"], "/v1/evaluations"),
    (&["GET"], "/v1/evaluation/{id}"),
    (&["GET"], "/v1/evaluation/{id}/allocations"),
    (&["GET"], "/v1/nodes"),
    (&["GET"], "/v1/node/{id}"),
    (&["GET"], "/v1/node/{id}/allocations"),
    (&["PUT", "POST"], "/v1/node/{id}/drain"),
    (&["PUT", "POST"], "/v1/node/{id}/eligibility"),
    (&["GET"], "/v1/status/leader"),
    (&["GET"], "/v1/status/peers"),
    (&["GET"], "/v1/regions"),
    (&["GET"], "/v1/agent/self"),
    (&["GET"], "/v1/agent/health"),
    (&["GET"], "/v1/agent/members"),
    (&["PUT", "POST"], "/v1/agent/force-leave"),
    (&["PUT", "POST"], "/v1/search"),
    (&["PUT", "POST"], "/v1/search/fuzzy"),
    (&["GET"], "/v1/scaling/policies"),
    (&["GET"], "/v1/scaling/policy/{id}"),
    (&["GET", "PUT", "POST", "DELETE"], "/v1/client/{*rest}"),
    (&["GET"], "/v1/operator/raft/configuration"),
    (&["DELETE"], "/v1/operator/raft/peer"),
    (&["PUT", "POST"], "/v1/operator/raft/transfer-leadership"),
    (&["GET", "PUT"], "/v1/operator/snapshot"),
    // The agents' routes (RPC listener only).
    (&["PUT"], "/v1/internal/node/register"),
    (&["PUT"], "/v1/internal/node/{id}/heartbeat"),
    (&["PUT"], "/v1/internal/node/{id}/allocs"),
    (&["PUT"], "/v1/internal/bench/noop"),
    // Not routes at all.
    (&["GET", "PATCH"], "/v1/{id}"),
    (&["GET"], "/{id}"),
];

const METHODS: &[&str] = &["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS"];

/// How long one request may take before it counts as blocked (a blocking query).
const REQUEST_LIMIT: Duration = Duration::from_secs(3);

fn pick<'a, T>(rng: &mut StdRng, xs: &'a [T]) -> &'a T {
    &xs[rng.gen_range(0..xs.len())]
}

fn random_string(rng: &mut StdRng) -> String {
    let alphabet: &[&str] = &[
        "a", "Z", "0", "9", "-", "_", ".", "..", "/", "%", "%2F", "%2e%2e", "%00", "%ZZ", "%FF",
        "é", "日本", "🦀", "\u{202e}", " ", "+", "?", "#", "&", "=", "\\", "'", "\"", "{", "}",
    ];
    let n = rng.gen_range(0..12);
    (0..n).map(|_| *pick(rng, alphabet)).collect()
}

/// Escapes what a URI cannot carry raw; keeps `%` so broken escapes reach the server.
fn uri_safe(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            'a'..='z'
            | 'A'..='Z'
            | '0'..='9'
            | '-'
            | '_'
            | '.'
            | '~'
            | '%'
            | '/'
            | '+'
            | '='
            | '&' => out.push(ch),
            _ => {
                let mut b = [0u8; 4];
                for byte in ch.encode_utf8(&mut b).bytes() {
                    out.push_str(&format!("%{byte:02X}"));
                }
            }
        }
    }
    out
}

struct Known {
    job: String,
    node: String,
    node_secret: String,
    alloc: String,
    eval: String,
}

fn random_id(rng: &mut StdRng, k: &Known) -> String {
    match rng.gen_range(0..10) {
        0 => k.job.clone(),
        1 => k.node.clone(),
        2 => k.alloc.clone(),
        3 => k.eval.clone(),
        4 => k.node.get(..rng.gen_range(0..=8)).unwrap_or("").to_string(),
        5 => "..".into(),
        6 => "x".repeat(rng.gen_range(1..3000)),
        _ => random_string(rng),
    }
}

fn random_number(rng: &mut StdRng) -> String {
    pick(
        rng,
        &[
            "0",
            "1",
            "-1",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "NaN",
            "inf",
            "-inf",
            "1e400",
            "0x10",
            "1.5",
            "",
        ],
    )
    .to_string()
}

fn random_duration(rng: &mut StdRng) -> String {
    pick(
        rng,
        &[
            "1ms",
            "5ms",
            "0",
            "99999999999999999999s",
            "9223372036854775807h",
            "-5s",
            "NaN",
            "1e400s",
            "1..2s",
            "5x",
            "s",
            "2562047h47m16.854775808s",
            "10",
            "",
        ],
    )
    .to_string()
}

fn random_query(rng: &mut StdRng) -> String {
    let keys = [
        "index",
        "wait",
        "prefix",
        "stale",
        "namespace",
        "purge",
        "consistent",
        "ms",
        "id",
        "address",
        "region",
        "diff",
        "all",
        "task",
        "type",
        "origin",
        "offset",
        "limit",
        "follow",
    ];
    let n = rng.gen_range(0..5);
    let mut parts = Vec::new();
    for _ in 0..n {
        let key = *pick(rng, &keys);
        let value = match key {
            "index" | "ms" | "id" | "offset" | "limit" => random_number(rng),
            "wait" => random_duration(rng),
            _ if rng.gen_bool(0.5) => random_number(rng),
            _ => random_string(rng),
        };
        parts.push(format!("{key}={}", uri_safe(&value)));
    }
    parts.join("&")
}

fn valid_job(id: &str) -> Value {
    json!({
        "ID": id, "Type": "service", "Datacenters": ["dc1"],
        "TaskGroups": [{"Name": "g", "Count": 1, "Tasks": [{"Name": "t", "Driver": "raw_exec",
            "Config": {"command": "/bin/sleep", "args": ["1"]},
            "Resources": {"CPU": 10, "MemoryMB": 10}}]}]
    })
}

fn weird_value(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..12) {
        0 => Value::Null,
        1 => json!(-1),
        2 => json!(i64::MAX),
        3 => json!(u64::MAX),
        4 => json!(1e308),
        5 => json!(-9_223_372_036_854_775_808i64),
        6 => json!(""),
        7 => json!(random_string(rng)),
        8 => json!([]),
        9 => json!({}),
        10 => json!(true),
        _ => json!("x".repeat(rng.gen_range(0..5000))),
    }
}

/// Replaces a random field (anywhere in the tree) with a weird value.
fn mutate(rng: &mut StdRng, v: &mut Value) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let k = pick(rng, &keys).clone();
            if rng.gen_bool(0.4) {
                m.insert(k, weird_value(rng));
            } else if rng.gen_bool(0.1) {
                m.remove(&k);
            } else {
                mutate(rng, m.get_mut(&k).expect("listed"));
            }
        }
        Value::Array(a) if !a.is_empty() => {
            let i = rng.gen_range(0..a.len());
            mutate(rng, &mut a[i]);
        }
        other => *other = weird_value(rng),
    }
}

fn random_body(rng: &mut StdRng, path: &str, k: &Known) -> Vec<u8> {
    match rng.gen_range(0..10) {
        0 => Vec::new(),
        1 => (0..rng.gen_range(0..200)).map(|_| rng.gen()).collect(),
        2 => pick(
            rng,
            &["{", "[]", "null", "{}", "\"x\"", "1e999", "{\"Job\":"],
        )
        .as_bytes()
        .to_vec(),
        3 => weird_value(rng).to_string().into_bytes(),
        _ => {
            let mut v = if path.contains("register") {
                json!({"Node": {"ID": random_id(rng, k), "Name": "fuzz", "Datacenter": "dc1"}})
            } else if path.contains("allocs") {
                json!({"Alloc": [{"ID": k.alloc, "ClientStatus": "running"}]})
            } else if path.contains("drain") {
                json!({"DrainSpec": {"Deadline": 1_000_000_000, "IgnoreSystemJobs": false}})
            } else if path.contains("eligibility") {
                json!({"Eligibility": "ineligible"})
            } else if path.contains("parse") {
                json!({"JobHCL": "job \"x\" { group \"g\" { task \"t\" { driver = \"raw_exec\" } } }"})
            } else if path.contains("search") {
                let ctx = *pick(rng, &["all", "jobs", "allocs", "nodes", "evals", "job", ""]);
                json!({"Prefix": random_id(rng, k), "Text": random_id(rng, k), "Context": ctx})
            } else if path.contains("snapshot") {
                json!({})
            } else {
                json!({"Job": valid_job(&random_id(rng, k))})
            };
            for _ in 0..rng.gen_range(0..4) {
                mutate(rng, &mut v);
            }
            v.to_string().into_bytes()
        }
    }
}

struct Case {
    method: String,
    uri: String,
    body: Vec<u8>,
    rpc: bool,
    secret: bool,
}

fn random_case(rng: &mut StdRng, k: &Known) -> Case {
    let (methods, template) = *pick(rng, ROUTES);
    let method = if rng.gen_bool(0.85) {
        pick(rng, methods).to_string()
    } else {
        pick(rng, METHODS).to_string()
    };
    let id = uri_safe(&random_id(rng, k));
    let rest = format!(
        "{}/{}",
        pick(
            rng,
            &["allocation", "fs/cat", "fs/ls", "logs", "stats", "x"]
        ),
        id
    );
    let mut path = template.replace("{id}", &id).replace("{*rest}", &rest);
    if rng.gen_bool(0.05) {
        let odd: &&str = pick(rng, &["//v1//", "/v1/./", "/v1/../v1/"]);
        path = path.replacen("/v1/", odd.as_ref(), 1);
    }
    let query = random_query(rng);
    let uri = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let body = random_body(rng, &uri, k);
    Case {
        method,
        uri,
        body,
        rpc: rng.gen_bool(0.5),
        secret: rng.gen_bool(0.5),
    }
}

/// Is `text` an error sentence: non-empty words, not just a status line?
fn is_sentence(text: &str) -> bool {
    text.split_whitespace().count() >= 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_to_every_route_never_panic_and_every_error_is_a_sentence() {
    let seed: u64 = std::env::var("DROVER_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let total: u64 = std::env::var("DROVER_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30_000);
    println!("route fuzz seed {seed}: replay with DROVER_FUZZ_SEED={seed}");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        server::ServerConfig::new(dir.path().join("server"), "127.0.0.1:0".parse().unwrap());
    cfg.rpc_addr = Some("127.0.0.1:0".parse().unwrap());
    // A fuzzer posing as a peer would only test Raft's own input checks.
    cfg.serve_peers = false;
    cfg.write_timeout = Duration::from_secs(2);
    let (srv, _http_listener, _rpc_listener) = server::start(cfg).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !srv.is_leader() {
        assert!(tokio::time::Instant::now() < deadline, "no leadership");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let public = server::http::router(srv.clone());
    let rpc = server::http::rpc_router(srv.clone());

    // Some real objects, so ids hit something.
    let call = |app: axum::Router, method: &str, uri: &str, body: Value, secret: &str| {
        let mut req = Request::builder().method(method).uri(uri);
        if !secret.is_empty() {
            req = req.header(api::NODE_SECRET_HEADER, secret);
        }
        let req = req.body(Body::from(body.to_string())).unwrap();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (s, _) = call(
        public.clone(),
        "PUT",
        "/v1/jobs",
        json!({"Job": valid_job("web")}),
        "",
    )
    .await;
    assert!(s.is_success(), "{s}");
    let (s, reg) = call(
        rpc.clone(),
        "PUT",
        "/v1/internal/node/register",
        json!({"Node": {"ID": "fuzz-node-0001", "Name": "n1", "Datacenter": "dc1",
            "Status": "ready", "Drivers": {"raw_exec": {"Detected": true, "Healthy": true}},
            "NodeResources": {"Cpu": {"CpuShares": 4000}, "Memory": {"MemoryMB": 4000},
            "Disk": {"DiskMB": 10000}}}}),
        "",
    )
    .await;
    assert!(s.is_success(), "{s}");
    let node_secret = reg["SecretID"].as_str().unwrap_or_default().to_string();
    let (_, evals) = call(public.clone(), "GET", "/v1/evaluations", json!({}), "").await;
    let (_, allocs) = call(public.clone(), "GET", "/v1/allocations", json!({}), "").await;
    let known = Arc::new(Known {
        job: "web".into(),
        node: "fuzz-node-0001".into(),
        node_secret,
        alloc: allocs[0]["ID"].as_str().unwrap_or("no-alloc").to_string(),
        eval: evals[0]["ID"].as_str().unwrap_or("no-eval").to_string(),
    });

    let started = std::time::Instant::now();
    let results = futures_util::stream::iter(0..total)
        .map(|i| {
            let (public, rpc, known) = (public.clone(), rpc.clone(), known.clone());
            async move {
                let mut rng = StdRng::seed_from_u64(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let case = random_case(&mut rng, &known);
                let describe = || {
                    format!(
                        "request {i}: {} {} on the {} listener, body {:?}",
                        case.method,
                        case.uri,
                        if case.rpc { "RPC" } else { "public" },
                        String::from_utf8_lossy(&case.body[..case.body.len().min(300)])
                    )
                };
                let mut req = Request::builder()
                    .method(Method::from_bytes(case.method.as_bytes()).unwrap())
                    .uri(&case.uri);
                if case.secret {
                    req = req.header(api::NODE_SECRET_HEADER, known.node_secret.as_str());
                }
                let Ok(req) = req.body(Body::from(case.body.clone())) else {
                    return Ok(false); // not a request a client could send
                };
                let app = if case.rpc { rpc } else { public };
                let resp = match tokio::time::timeout(REQUEST_LIMIT, app.oneshot(req)).await {
                    Err(_) => return Ok(true), // blocked (a blocking query waiting)
                    Ok(r) => r.unwrap(),
                };
                let status = resp.status().as_u16();
                let body = match tokio::time::timeout(
                    REQUEST_LIMIT,
                    axum::body::to_bytes(resp.into_body(), 64 << 20),
                )
                .await
                {
                    Err(_) => return Ok(true),
                    Ok(b) => b.map_err(|e| format!("{}: unreadable body: {e}", describe()))?,
                };
                let text = String::from_utf8_lossy(&body);
                let relay = case.uri.starts_with("/v1/client/") && status == 502;
                if status >= 500 && status != 503 && !relay {
                    return Err(format!("{}: {status}: {text}", describe()));
                }
                // A HEAD answer has no body by definition.
                if (400..500).contains(&status) && case.method != "HEAD" && !is_sentence(&text) {
                    return Err(format!(
                        "{}: {status} without a sentence: {text:?}",
                        describe()
                    ));
                }
                Ok(false)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<Result<bool, String>>>()
        .await;
    let blocked = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    println!(
        "route fuzz seed {seed}: {total} requests in {:?}, {blocked} blocked past {REQUEST_LIMIT:?}, {} failures",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "seed {seed} (replay with DROVER_FUZZ_SEED={seed}): {} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Blocking queries that really wait are rare; most requests must be answered.
    assert!(
        (blocked as u64) < total / 20,
        "seed {seed}: {blocked} of {total} requests blocked"
    );
    let _ = srv.raft.shutdown().await;
}
