//! Every byte is hostile: seeded random and mutated policies, routes and API bodies must
//! never panic, and every refusal must point at a real line and column.

use acl::{required, Acl, AclPolicy, AclRole, AclToken, NamespaceCapability, Policy};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEEDS: &[&str] = &[
    r#"namespace "default" {
  policy       = "write"
  capabilities = ["alloc-node-exec", "read-logs"]
  variables {
    path "project/*" { capabilities = ["read", "write"] }
    path "*" { capabilities = ["list"] }
  }
}
namespace "prod-*" { policy = "read" }
node { policy = "read" }
agent { policy = "write" }
operator { policy = "deny" }
quota { policy = "read" }
plugin { policy = "list" }
host_volume "scratch-*" {
  policy       = "write"
  capabilities = ["mount-readonly"]
}
node_pool "*" { policy = "read" }
"#,
    r#"{"namespace": {"default": {"policy": "read", "capabilities": ["submit-job"],
  "variables": {"path": {"a/*": {"capabilities": ["read"]}}}}},
  "node": {"policy": "write"}, "host_volume": [{"*": {"policy": "read"}}]}"#,
    "namespace \"*\" {\n  policy = \"scale\"\n}\n",
];

const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "=",
    ",",
    ":",
    "\n",
    " ",
    "*",
    "#",
    "//",
    "/*",
    "*/",
    "${",
    "%{",
    "<<EOF\n",
    "\nEOF\n",
    "\\",
    "\\u0000",
    "namespace",
    "policy",
    "capabilities",
    "variables",
    "path",
    "node",
    "deny",
    "read",
    "write",
    "é",
    "\u{202e}",
    "\u{0}",
    "🦀",
    "1e999",
    "-",
    "null",
    "true",
    "[[[[[[[[",
    "{{{{{{{{",
    "\"\"\"",
    "\r\n",
    "\t",
];

fn mutate(rng: &mut StdRng, seed: &str) -> String {
    let mut b = seed.as_bytes().to_vec();
    for _ in 0..rng.gen_range(1..8) {
        let len = b.len();
        match rng.gen_range(0..6) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] = rng.gen();
            }
            1 => {
                let i = rng.gen_range(0..=len);
                let t = TOKENS[rng.gen_range(0..TOKENS.len())];
                b.splice(i..i, t.bytes());
            }
            2 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 20));
                b.drain(i..j);
            }
            3 if len > 0 => {
                let i = rng.gen_range(0..len);
                let j = rng.gen_range(i..=len.min(i + 40));
                let piece = b[i..j].to_vec();
                b.splice(i..i, piece);
            }
            4 if len > 0 => b.truncate(rng.gen_range(0..len)),
            _ => {
                let i = rng.gen_range(0..=len);
                b.insert(i, rng.gen_range(0x20..0x7f));
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn random_text(rng: &mut StdRng) -> String {
    let n = rng.gen_range(0..60);
    (0..n)
        .map(|_| TOKENS[rng.gen_range(0..TOKENS.len())])
        .collect()
}

fn check(src: &str) -> bool {
    match Policy::parse(src) {
        Ok(p) => {
            let acl = Acl::from_policies([&p]);
            let _ = acl.allow_namespace_operation("default", NamespaceCapability::ReadJob);
            let _ = acl.allow_namespace("*");
            let _ = acl.allow_node_write();
            true
        }
        Err(e) => {
            let lines = src.split('\n').count();
            assert!(!e.0.is_empty(), "an error with no diagnostic for {src:?}");
            for d in &e.0 {
                assert!(
                    d.line >= 1 && d.column >= 1 && d.line <= lines + 1,
                    "diagnostic {d} is outside {src:?}"
                );
            }
            false
        }
    }
}

#[test]
fn ten_thousand_hostile_policies_never_panic() {
    let mut rng = StdRng::seed_from_u64(16);
    let mut accepted = 0;
    for seed in SEEDS {
        assert!(check(seed), "seed policy refused: {seed}");
    }
    for i in 0..10_000 {
        let src = if i % 4 == 0 {
            random_text(&mut rng)
        } else {
            let seed = SEEDS[rng.gen_range(0..SEEDS.len())];
            mutate(&mut rng, seed)
        };
        if check(&src) {
            accepted += 1;
        }
    }
    // Most mutations break the policy; some (in comments, whitespace) do not.
    assert!(accepted > 0 && accepted < 10_000, "accepted {accepted}");
}

#[test]
fn huge_and_deep_policies_are_refused_quickly() {
    let deep = format!(
        "namespace \"a\" {{ capabilities = {} }}",
        "[".repeat(200_000)
    );
    assert!(Policy::parse(&deep).is_err());
    let deep_json = "{\"namespace\":".repeat(100_000);
    assert!(Policy::parse(&deep_json).is_err());
    let big = "# comment\n".repeat(100_000);
    let e = Policy::parse(&big).unwrap_err();
    assert!(e.to_string().contains("more than the"), "{e}");
    let long_line = format!(
        "namespace \"{}\" {{ policy = \"read\" }}",
        "a".repeat(5_000)
    );
    assert!(Policy::parse(&long_line).is_err());
}

#[test]
fn hostile_routes_and_bodies_never_panic() {
    let mut rng = StdRng::seed_from_u64(61);
    let methods = ["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH", "", "gEt"];
    let parts = [
        "v1",
        "job",
        "jobs",
        "acl",
        "token",
        "self",
        "client",
        "fs",
        "logs",
        "..",
        ".",
        "",
        "%2F",
        "%",
        "%zz",
        "*",
        "node",
        "var",
        "é",
        "allocation",
        "periodic",
        "force",
    ];
    for _ in 0..5_000 {
        let n = rng.gen_range(0..8);
        let path: String = (0..n)
            .map(|_| format!("/{}", parts[rng.gen_range(0..parts.len())]))
            .collect();
        let query = mutate(&mut rng, "namespace=*&type=host&index=3");
        let m = methods[rng.gen_range(0..methods.len())];
        let r = required(m, &path, &query);
        let _ = r.allows(&Acl::deny_all(), "default", "a/b");
        let body = mutate(
            &mut rng,
            r#"{"Name":"x","Type":"client","Policies":["a"],"ExpirationTTL":"1h","Rules":"node { policy = \"read\" }"}"#,
        );
        if let Ok(t) = serde_json::from_str::<AclToken>(&body) {
            let _ = t.validate();
        }
        if let Ok(p) = serde_json::from_str::<AclPolicy>(&body) {
            let _ = p.validate();
        }
        if let Ok(r) = serde_json::from_str::<AclRole>(&body) {
            let _ = r.validate();
        }
    }
}

#[test]
fn long_operator_chains_do_not_exhaust_the_stack() {
    for chain in [
        format!("node {{ policy = {}\"read\" }}", "!".repeat(100_000)),
        format!("node {{ policy = {}1 }}", "-".repeat(100_000)),
        format!("node {{ policy = {}1 }}", "a ? ".repeat(50_000)),
        format!("node {{ policy = 1{} }}", " + 1".repeat(50_000)),
        format!("node {{ policy = a{} }}", ".b".repeat(100_000)),
    ] {
        assert!(Policy::parse(&chain).is_err());
    }
}
