use super::*;
use serde_json::json;

fn env() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("NOMAD_TASK_NAME".to_string(), "web".to_string()),
        ("GREETING".to_string(), "hello".to_string()),
    ])
}

fn render_with(src: &str, snapshot: &Snapshot, missing_key: bool) -> Result<String, String> {
    let nodes = lang::parse(src, "{{", "}}").map_err(|e| e.to_string())?;
    if let Some((line, name)) = exec::unknown_function(&nodes, &|n| funcs::NAMES.contains(&n)) {
        return Err(format!("line {line}: function {name:?} not defined"));
    }
    let env = env();
    let ctx = funcs::Context::new(&env, snapshot, "default");
    let table = funcs::FuncTable::new(&ctx);
    exec::execute(&nodes, &Value::Null, &table, missing_key).map_err(|e| e.to_string())
}

fn render(src: &str) -> String {
    render_with(src, &Snapshot::new(), false).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn var_snapshot() -> Snapshot {
    Snapshot::from([(
        Dep::Var {
            path: "app/config".into(),
            namespace: "default".into(),
        },
        Some(json!({"Path": "app/config", "Items": {"b": "2", "a": "1", "port": "8080"}})),
    )])
}

#[test]
fn text_env_and_literals_render() {
    assert_eq!(render("plain text"), "plain text");
    assert_eq!(
        render(r#"{{ env "GREETING" }} {{ "lit" }} {{ 42 }}"#),
        "hello lit 42"
    );
    assert_eq!(render(r#"[{{ env "NOPE" }}]"#), "[]");
    assert_eq!(render("{{/* a comment */}}x"), "x");
}

#[test]
fn trim_markers_eat_whitespace_on_their_side() {
    assert_eq!(render("a  \n {{- \"b\" -}} \n  c"), "abc");
    assert_eq!(render("{{ -3 }}"), "-3");
}

#[test]
fn control_structures_follow_go() {
    assert_eq!(
        render(r#"{{ if eq 1 2 }}a{{ else if eq 2 2 }}b{{ else }}c{{ end }}"#),
        "b"
    );
    assert_eq!(
        render(r#"{{ range $i, $v := split "," "x,y" }}{{ $i }}={{ $v }};{{ end }}"#),
        "0=x;1=y;"
    );
    assert_eq!(
        render(r#"{{ range split "," "" }}x{{ else }}empty{{ end }}"#),
        "empty"
    );
    assert_eq!(
        render(r#"{{ range split "," "a" }}{{ . }}{{ else }}empty{{ end }}"#),
        "a"
    );
    assert_eq!(
        render(r#"{{ with "" }}x{{ else }}y{{ end }}{{ with "v" }}{{ . }}{{ end }}"#),
        "yv"
    );
    assert_eq!(
        render(r#"{{ $x := "a" }}{{ if true }}{{ $x = "b" }}{{ end }}{{ $x }}"#),
        "b"
    );
    assert_eq!(render(r#"{{ len (split "," "a,b,c") }}"#), "3");
    assert_eq!(render(r#"{{ index (split "," "a,b") 1 }}"#), "b");
    assert_eq!(
        render(r#"{{ printf "%s:%d %05.1f %q" "a" 7 3.14159 "x" }}"#),
        "a:7 003.1 \"x\""
    );
    assert_eq!(
        render(r#"{{ "A-B" | toLower | replaceAll "-" "_" }}"#),
        "a_b"
    );
    assert_eq!(
        render(r#"{{ and 1 0 }} {{ or 0 "x" }} {{ not false }}"#),
        "0 x true"
    );
    assert_eq!(
        render(r#"{{ if lt 1 2 }}lt{{ end }}{{ if ge "b" "a" }}ge{{ end }}"#),
        "ltge"
    );
}

#[test]
fn helper_functions_match_consul_template() {
    assert_eq!(render(r#"{{ split "," "a,b" | join ";" }}"#), "a;b");
    assert_eq!(render(r#"{{ "  x  " | trimSpace | toUpper }}"#), "X");
    assert_eq!(
        render(r#"{{ if split "," "a,b" | contains "b" }}yes{{ end }}"#),
        "yes"
    );
    assert_eq!(
        render(r#"{{ if "haystack" | contains "st" }}yes{{ end }}"#),
        "yes"
    );
    assert_eq!(
        render(r#"{{ with parseJSON `{"k":[1,2]}` }}{{ .k | toJSON }}{{ end }}"#),
        "[1,2]"
    );
    assert_eq!(render(r#"{{ range loop 3 }}{{ . }}{{ end }}"#), "012");
    assert_eq!(render(r#"{{ 5 | subtract 2 }} {{ add 1 2 }}"#), "3 3");
}

#[test]
fn maps_range_in_key_order() {
    let out = render_with(
        r#"{{ range $k, $v := nomadVar "app/config" }}{{ $k }}={{ $v }} {{ end }}{{ with nomadVar "app/config" }}{{ .port }}{{ end }}"#,
        &var_snapshot(),
        false,
    )
    .unwrap();
    assert_eq!(out, "a=1 b=2 port=8080 8080");
}

#[test]
fn missing_keys_are_empty_unless_error_on_missing_key() {
    let src = r#"{{ with nomadVar "app/config" }}[{{ .nope }}]{{ end }}"#;
    assert_eq!(render_with(src, &var_snapshot(), false).unwrap(), "[]");
    let e = render_with(src, &var_snapshot(), true).unwrap_err();
    assert!(e.contains("no entry for key \"nope\""), "{e}");
}

#[test]
fn syntax_errors_and_unknown_functions_are_sentences_with_lines() {
    for (src, want) in [
        ("a\n{{ if true }}x", "line 2"),
        ("{{ \"unterminated }}", "unterminated quoted string"),
        ("{{ end }}", "unexpected {{end}}"),
        ("{{ nope 1 }}", "function \"nope\" not defined"),
        ("{{ (1 }}", "unclosed left paren"),
        ("{{ x", "unclosed action"),
        ("{{ template \"x\" }}", "not supported"),
    ] {
        let e = render_with(src, &Snapshot::new(), false).unwrap_err();
        assert!(e.contains(want), "{src:?}: {e}");
    }
}

#[test]
fn custom_delimiters_leave_braces_alone() {
    let nodes = lang::parse(r#"{{ literal }} [[ env "GREETING" ]]"#, "[[", "]]").unwrap();
    let env = env();
    let snap = Snapshot::new();
    let ctx = funcs::Context::new(&env, &snap, "default");
    let table = funcs::FuncTable::new(&ctx);
    let out = exec::execute(&nodes, &Value::Null, &table, false).unwrap();
    assert_eq!(out, "{{ literal }} hello");
}

#[test]
fn server_reads_are_recorded_as_missing_then_absent() {
    let env = env();
    let empty = Snapshot::new();
    let nodes = lang::parse(
        r#"{{ with nomadVar "p@ns1" }}{{ .k }}{{ end }}"#,
        "{{",
        "}}",
    )
    .unwrap();
    let ctx = funcs::Context::new(&env, &empty, "default");
    exec::execute(&nodes, &Value::Null, &funcs::FuncTable::new(&ctx), false).unwrap();
    let dep = Dep::Var {
        path: "p".into(),
        namespace: "ns1".into(),
    };
    assert!(ctx.missing.borrow().contains(&dep));
    let absent = Snapshot::from([(dep.clone(), None)]);
    let ctx = funcs::Context::new(&env, &absent, "default");
    exec::execute(&nodes, &Value::Null, &funcs::FuncTable::new(&ctx), false).unwrap();
    assert!(ctx.absent.borrow().contains(&dep));
    assert_eq!(dep.describe(), "nomad.var.block(p@ns1.global)");
}

#[test]
fn services_render_in_consul_templates_shape() {
    let snap = Snapshot::from([(
        Dep::Service {
            name: "db".into(),
            namespace: "default".into(),
            choose: None,
        },
        Some(json!([{"ServiceName": "db", "Address": "10.0.0.1", "Port": 5432, "Tags": ["a"]}])),
    )]);
    let out = render_with(
        r#"{{ range nomadService "db" }}{{ .Name }} {{ .Address }}:{{ .Port }} {{ .Tags }}{{ end }}"#,
        &snap,
        false,
    )
    .unwrap();
    assert_eq!(out, "db 10.0.0.1:5432 [a]");
}

#[test]
fn env_files_parse_key_value_lines() {
    let vars = files::parse_env("# c\nA=1\nexport B = \"two words\"\n\nC='x'\n").unwrap();
    assert_eq!(
        vars,
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "two words".into()),
            ("C".into(), "x".into())
        ]
    );
    assert!(files::parse_env("no equals").is_err());
    assert!(files::parse_env("1X=2").is_err());
}

fn dirs(root: &Path) -> TaskDirs {
    crate::allocdir::AllocDir {
        root: root.to_path_buf(),
    }
    .build_task("t")
    .unwrap()
}

#[test]
fn destinations_stay_inside_the_task_and_alloc_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let ok = |p: &str| files::below_root("destination", p, "t", &d).unwrap();
    assert_eq!(ok("local/a.conf"), Path::new("t/local/a.conf"));
    assert_eq!(ok("alloc/shared.conf"), Path::new("alloc/shared.conf"));
    assert_eq!(
        ok(&format!("{}/x", d.secrets.display())),
        Path::new("t/secrets/x")
    );
    assert_eq!(
        ok(&format!("{}/y", d.shared.display())),
        Path::new("alloc/y")
    );
    assert_eq!(ok("/local/z"), Path::new("t/local/z"));
    for bad in ["../../etc/x", "/etc/passwd", "local/../../x", "", "."] {
        assert!(
            files::below_root("destination", bad, "t", &d).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn writes_are_atomic_with_perms_and_refuse_planted_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let _ = dirs(tmp.path());
    let rel = Path::new("t/local/sub/out.conf");
    files::write_atomic(tmp.path(), rel, b"one", 0o600).unwrap();
    files::write_atomic(tmp.path(), rel, b"two", 0o640).unwrap();
    let full = tmp.path().join(rel);
    assert_eq!(std::fs::read_to_string(&full).unwrap(), "two");
    assert_eq!(
        std::fs::metadata(&full).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let leftovers: Vec<_> = std::fs::read_dir(full.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let outside = tmp.path().join("outside");
    std::fs::write(&outside, "keep").unwrap();
    std::os::unix::fs::symlink(&outside, tmp.path().join("t/local/link")).unwrap();
    let e = files::write_atomic(tmp.path(), Path::new("t/local/link"), b"x", 0o644).unwrap_err();
    assert!(e.contains("symbolic link"), "{e}");
    std::os::unix::fs::symlink(tmp.path(), tmp.path().join("t/local/dirlink")).unwrap();
    let e =
        files::write_atomic(tmp.path(), Path::new("t/local/dirlink/x"), b"x", 0o644).unwrap_err();
    assert!(e.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn sources_are_read_only_inside_the_task_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = dirs(tmp.path());
    std::fs::write(tmp.path().join("t/local/in.tpl"), "{{ 1 }}").unwrap();
    assert_eq!(
        files::read_source(tmp.path(), "t", Path::new("t/local/in.tpl")).unwrap(),
        "{{ 1 }}"
    );
    std::fs::write(tmp.path().join("secret"), "no").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret"), tmp.path().join("t/local/s")).unwrap();
    assert!(files::read_source(tmp.path(), "t", Path::new("t/local/s")).is_err());
    assert!(files::read_source(tmp.path(), "t", Path::new("alloc/x")).is_err());
}

#[tokio::test]
async fn render_all_writes_files_and_returns_env_vars() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let templates = vec![
        Template {
            dest_path: "local/app.conf".into(),
            embedded_tmpl: r#"name={{ env "NOMAD_TASK_NAME" }}"#.into(),
            ..Default::default()
        },
        Template {
            dest_path: "secrets/app.env".into(),
            embedded_tmpl: "FROM_TEMPLATE={{ env \"GREETING\" }}\n".into(),
            envvars: true,
            perms: "600".into(),
            ..Default::default()
        },
    ];
    let mut r = Renderer::new(
        templates,
        None,
        "default",
        tmp.path(),
        "t",
        &d,
        TaskEnv::from_vars(env()),
    );
    let vars = r.render_all().await.unwrap();
    assert_eq!(vars["FROM_TEMPLATE"], "hello");
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("t/local/app.conf")).unwrap(),
        "name=web"
    );
    assert!(!r.watches_anything());

    let bad = vec![Template {
        dest_path: "local/x".into(),
        embedded_tmpl: "{{ if }}".into(),
        ..Default::default()
    }];
    let mut r = Renderer::new(
        bad,
        None,
        "default",
        tmp.path(),
        "t",
        &d,
        TaskEnv::from_vars(env()),
    );
    match r.render_all().await {
        Err(TemplateError::Failed(m)) => assert!(m.contains("missing value for if"), "{m}"),
        other => panic!("{other:?}"),
    }
    let needs_var = vec![Template {
        dest_path: "local/y".into(),
        embedded_tmpl: r#"{{ with nomadVar "x" }}{{ .k }}{{ end }}"#.into(),
        ..Default::default()
    }];
    let mut r = Renderer::new(
        needs_var,
        None,
        "default",
        tmp.path(),
        "t",
        &d,
        TaskEnv::from_vars(env()),
    );
    assert!(matches!(
        r.render_all().await,
        Err(TemplateError::Missing(_))
    ));
}

#[test]
fn a_restart_covers_signals_and_signals_are_sent_once() {
    let t = |mode: &str, sig: &str| Template {
        change_mode: mode.into(),
        change_signal: sig.into(),
        ..Default::default()
    };
    let ts = [t("signal", "SIGHUP"), t("signal", "SIGHUP"), t("noop", "")];
    assert_eq!(
        changes_for(ts.iter()),
        vec![Change::Signal("SIGHUP".into())]
    );
    let ts = [t("signal", "SIGHUP"), t("restart", "")];
    assert_eq!(changes_for(ts.iter()), vec![Change::Restart]);
}

#[test]
fn templates_from_real_nomad_job_files_render() {
    let snap = Snapshot::from([(
        Dep::Service {
            name: "db".into(),
            namespace: "default".into(),
            choose: Some("2|a1".into()),
        },
        Some(json!([
            {"ServiceName": "db", "Address": "10.0.0.1", "Port": 1},
            {"ServiceName": "db", "Address": "10.0.0.2", "Port": 2}
        ])),
    )]);
    let src = "{{$allocID := env \"NOMAD_ALLOC_ID\" -}}\n{{range nomadService 2 $allocID \"db\"}}\n  server {{ .Address }}:{{ .Port }}\n{{- end}}\n";
    let mut env = env();
    env.insert("NOMAD_ALLOC_ID".into(), "a1".into());
    let nodes = lang::parse(src, "{{", "}}").unwrap();
    let ctx = funcs::Context::new(&env, &snap, "default");
    let out = exec::execute(&nodes, &Value::Null, &funcs::FuncTable::new(&ctx), false).unwrap();
    assert_eq!(out, "\n  server 10.0.0.1:1\n  server 10.0.0.2:2\n");
    assert!(ctx.missing.borrow().is_empty());
}

#[test]
fn hostile_templates_fail_instead_of_exhausting_the_agent() {
    let deep_parens = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let deep_ifs = "{{ if true }}".repeat(5000);
    for (src, want) in [
        (
            "{{ range loop 100000 }}{{ range loop 100000 }}{{ end }}{{ end }}".to_string(),
            "steps",
        ),
        (
            "{{ $x := \"ab\" }}{{ range loop 40 }}{{ $x = printf \"%s%s\" $x $x }}{{ end }}".into(),
            "more than",
        ),
        ("{{ printf \"%999999999d\" 1 }}".into(), "limited"),
        (
            "{{ $s := printf \"%9999s\" \"\" }}{{ replaceAll \"\" $s $s }}".into(),
            "larger than",
        ),
        (deep_parens, "nested"),
        (deep_ifs, "nested"),
    ] {
        let shown = &src[..src.len().min(60)];
        match render_with(&src, &Snapshot::new(), false) {
            Ok(out) => panic!("{shown}: rendered {} bytes", out.len()),
            Err(e) => assert!(e.contains(want), "{shown}: {e}"),
        }
    }
}
