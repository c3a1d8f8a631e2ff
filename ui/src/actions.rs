//! The UI's actions: plain form POSTs, refused unless they come from this origin, each
//! turned into the `/v1` request the CLI would send and run through the server's own
//! public router (`server::http::router`), so the handler, validation, leader forwarding
//! and error sentences are exactly the API's. Success redirects (303) back to the page.

use crate::fmt;
use crate::pages::problem;
use crate::Srv;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use server::http::AppState;
use tower::ServiceExt;

/// Is this POST from a page of this UI? Browsers send `Sec-Fetch-Site` (it must be
/// `same-origin`) or at least `Origin` (it must name this host). A POST with neither is
/// refused too: a form of this UI always has one.
pub fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(format!(
                "refused a cross-site request (Sec-Fetch-Site: {}): actions must come from this UI's own pages",
                site.to_str().unwrap_or("?")
            ))
        };
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) => {
            let ok = !host.is_empty()
                && (origin == format!("http://{host}") || origin == format!("https://{host}"));
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "refused a cross-origin request from {origin}: actions must come from this UI's own pages"
                ))
            }
        }
        None => Err(
            "refused a request without an Origin header: actions must come from this UI's own pages"
                .into(),
        ),
    }
}

/// Run `method path` with a JSON body through the server's public `/v1` router; returns
/// the status and the body text (an API error is a sentence).
pub async fn call_v1(
    srv: &AppState,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(token) = crate::REQUEST_TOKEN.try_with(|t| t.clone()).ok().flatten() {
        req = req.header("X-Nomad-Token", token);
    }
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
    };
    let resp = match server::http::router(srv.clone()).oneshot(req).await {
        Ok(r) => r,
        Err(e) => match e {},
    };
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).trim().to_string())
}

/// The answer to a finished action: back to `to` (303), or a page with the API's sentence.
fn outcome(
    srv: &AppState,
    what: &str,
    (status, text): (StatusCode, String),
    to: String,
) -> Response {
    if status.is_success() {
        return Redirect::to(&to).into_response();
    }
    let code = if status.is_client_error() || status.is_server_error() {
        status
    } else {
        StatusCode::BAD_GATEWAY
    };
    problem(
        srv.snapshot().index(),
        code,
        &format!("Could not {what}"),
        &format!("{what} failed ({status}): {text}"),
    )
}

fn refused(srv: &AppState, why: String) -> Response {
    problem(
        srv.snapshot().index(),
        StatusCode::FORBIDDEN,
        "Request refused",
        &why,
    )
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct StopForm {
    pub namespace: String,
    pub purge: Option<String>,
}

/// `POST /ui/jobs/<id>/stop` -> `DELETE /v1/job/<id>?namespace=..[&purge=true]`.
pub async fn stop_job(
    axum::Extension(srv): Srv,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(f): Form<StopForm>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return refused(&srv, why);
    }
    let state = srv.snapshot();
    let Some(job) = crate::pages::job::find_job(&state, &raw)
        .filter(|j| f.namespace.is_empty() || j.ns() == f.namespace)
    else {
        return problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Job not found",
            &format!("There is no job {raw:?} to stop."),
        );
    };
    let purge = f.purge.as_deref() == Some("true");
    let path = format!(
        "/v1/job/{}{}",
        fmt::enc(&job.id),
        fmt::query(&[
            ("namespace", job.ns()),
            ("purge", if purge { "true" } else { "" })
        ])
    );
    let result = call_v1(&srv, Method::DELETE, &path, None).await;
    let to = if purge {
        "/ui/jobs?done=purged".to_string()
    } else {
        format!("{}?done=stopped", fmt::job_href(job.ns(), &job.id))
    };
    outcome(&srv, "stop the job", result, to)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EligibilityForm {
    pub eligibility: String,
}

/// `POST /ui/clients/<id>/eligibility` -> `PUT /v1/node/<id>/eligibility`.
pub async fn eligibility(
    axum::Extension(srv): Srv,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<EligibilityForm>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return refused(&srv, why);
    }
    let path = format!("/v1/node/{}/eligibility", fmt::enc(&id));
    let body = serde_json::json!({ "Eligibility": f.eligibility });
    let result = call_v1(&srv, Method::PUT, &path, Some(body)).await;
    let done = if f.eligibility == api::NODE_ELIGIBLE {
        "eligible"
    } else {
        "ineligible"
    };
    let to = format!("{}?done={done}", fmt::node_href(&id));
    outcome(&srv, "change the node's eligibility", result, to)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DrainForm {
    pub deadline: String,
    pub force: Option<String>,
    pub ignore_system_jobs: Option<String>,
    pub disable: Option<String>,
}

/// The `PUT /v1/node/<id>/drain` body a drain form asks for (as `drover node drain` sends).
pub fn drain_body(f: &DrainForm) -> Result<serde_json::Value, String> {
    if f.disable.as_deref() == Some("true") {
        return Ok(serde_json::json!({ "DrainSpec": null, "MarkEligible": false }));
    }
    let deadline = if f.force.as_deref() == Some("true") {
        -1
    } else {
        let d = f.deadline.trim();
        if d.is_empty() || d == "0" {
            0
        } else {
            api::duration::parse_go_duration_nanos(d)
                .map_err(|e| format!("invalid deadline {d:?}: {e}"))?
        }
    };
    Ok(serde_json::json!({
        "DrainSpec": {
            "Deadline": deadline,
            "IgnoreSystemJobs": f.ignore_system_jobs.as_deref() == Some("true"),
        },
        "Meta": { "message": "drain set from the web UI" },
    }))
}

/// `POST /ui/clients/<id>/drain` -> `PUT /v1/node/<id>/drain`.
pub async fn drain(
    axum::Extension(srv): Srv,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(f): Form<DrainForm>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return refused(&srv, why);
    }
    let body = match drain_body(&f) {
        Ok(b) => b,
        Err(e) => {
            return problem(
                srv.snapshot().index(),
                StatusCode::BAD_REQUEST,
                "Could not drain the node",
                &e,
            )
        }
    };
    let path = format!("/v1/node/{}/drain", fmt::enc(&id));
    let result = call_v1(&srv, Method::PUT, &path, Some(body)).await;
    let done = if f.disable.as_deref() == Some("true") {
        "undrain"
    } else {
        "drain"
    };
    let to = format!("{}?done={done}", fmt::node_href(&id));
    outcome(&srv, "drain the node", result, to)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct DeploymentForm {
    /// The job page to come back to.
    pub job: String,
    pub namespace: String,
}

/// `POST /ui/deployments/<id>/promote|fail` -> `PUT /v1/deployment/promote|fail/<id>`
/// (promote: all groups, as `drover deployment promote` without `-group`).
pub async fn deployment(
    axum::Extension(srv): Srv,
    Path((id, op)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<DeploymentForm>,
) -> Response {
    if let Err(why) = same_origin(&headers) {
        return refused(&srv, why);
    }
    let (body, what, done) = match op.as_str() {
        "promote" => (
            serde_json::json!({ "DeploymentID": id, "All": true }),
            "promote the deployment",
            "promoted",
        ),
        "fail" => (
            serde_json::json!({ "DeploymentID": id }),
            "fail the deployment",
            "deployment-failed",
        ),
        _ => {
            return problem(
                srv.snapshot().index(),
                StatusCode::NOT_FOUND,
                "Not found",
                "A deployment can be promoted or failed here, nothing else.",
            )
        }
    };
    let path = format!("/v1/deployment/{op}/{}", fmt::enc(&id));
    let result = call_v1(&srv, Method::PUT, &path, Some(body)).await;
    let to = format!("{}?done={done}", fmt::job_href(&f.namespace, &f.job));
    outcome(&srv, what, result, to)
}

/// The signals the allocation page offers (the agent accepts any it knows).
pub const SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGTERM", "SIGKILL",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AllocForm {
    /// A task of the allocation; empty for all of them.
    pub task: String,
    pub signal: String,
}

/// The `/v1` request an allocation action becomes: `(method, path, body, what, done)`.
pub fn alloc_request(
    id: &str,
    op: &str,
    f: &AllocForm,
) -> Result<
    (
        Method,
        String,
        serde_json::Value,
        &'static str,
        &'static str,
    ),
    String,
> {
    let id_enc = fmt::enc(id);
    let task = f.task.trim();
    Ok(match op {
        "stop" => (
            Method::PUT,
            format!("/v1/allocation/{id_enc}/stop"),
            serde_json::json!({}),
            "stop the allocation",
            "alloc-stopped",
        ),
        "restart" => (
            Method::PUT,
            format!("/v1/client/allocation/{id_enc}/restart"),
            serde_json::json!({ "TaskName": task, "AllTasks": task.is_empty() }),
            "restart",
            if task.is_empty() {
                "alloc-restarted"
            } else {
                "task-restarted"
            },
        ),
        "signal" => {
            let sig = f.signal.trim();
            if !SIGNALS.contains(&sig) {
                return Err(format!("{sig:?} is not one of the signals this page sends"));
            }
            (
                Method::PUT,
                format!("/v1/client/allocation/{id_enc}/signal"),
                serde_json::json!({ "Task": task, "Signal": sig }),
                "signal the task",
                "signalled",
            )
        }
        _ => return Err("An allocation can be stopped, restarted or signalled here.".into()),
    })
}

/// `POST /ui/allocations/<id>/stop|restart|signal` -> `PUT /v1/allocation/<id>/stop`,
/// `PUT /v1/client/allocation/<id>/restart|signal` (as `drover alloc stop|restart|signal`).
/// What every allocation action checks first: a same-origin form post, then the
/// allocation (by ID or prefix) in the state the action is judged against.
fn posted_alloc(
    srv: &AppState,
    headers: &HeaderMap,
    raw: &str,
) -> Result<
    (
        std::sync::Arc<server::state::StateStore>,
        std::sync::Arc<api::Allocation>,
    ),
    Box<Response>,
> {
    same_origin(headers).map_err(|why| Box::new(refused(srv, why)))?;
    let state = srv.snapshot();
    match crate::pages::alloc::find_alloc(&state, raw) {
        Some(a) => Ok((state, a)),
        None => Err(Box::new(problem(
            state.index(),
            StatusCode::NOT_FOUND,
            "Allocation not found",
            &format!("There is no allocation {raw:?}."),
        ))),
    }
}

pub async fn alloc_action(
    axum::Extension(srv): Srv,
    Path((raw, op)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<AllocForm>,
) -> Response {
    let (state, a) = match posted_alloc(&srv, &headers, &raw) {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let (method, path, body, what, done) = match alloc_request(&a.id, &op, &f) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                state.index(),
                StatusCode::BAD_REQUEST,
                "Could not act on the allocation",
                &e,
            )
        }
    };
    let result = call_v1(&srv, method, &path, Some(body)).await;
    let to = format!("{}?done={done}", fmt::alloc_href(&a.id));
    outcome(&srv, what, result, to)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExecForm {
    /// The task to run in; may be empty when the group has one task.
    pub task: String,
    /// The command line, split into words as a shell would (quotes group, `\` escapes).
    pub command: String,
}

/// Splits a command line into words the way a POSIX shell does for quoting only: single
/// quotes keep everything, double quotes keep all but `\"` and `\\`, a backslash escapes
/// the next character outside quotes. No expansion, no operators: wrap the line in
/// `sh -c '...'` for pipes or variables.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err("a single quote (') is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err("a double quote (\") is not closed".into()),
                        },
                        Some(c) => cur.push(c),
                        None => return Err("a double quote (\") is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some(c) => {
                    in_word = true;
                    cur.push(c);
                }
                None => return Err("the command ends with a lone backslash".into()),
            },
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        return Err("type a command to run, e.g. ls -l local".into());
    }
    Ok(words)
}

/// The `/v1` request a Run command form becomes (as `drover alloc exec -task T ID CMD...`
/// sends it): the path and the body.
pub fn exec_request(id: &str, f: &ExecForm) -> Result<(String, serde_json::Value), String> {
    let cmd = split_command(&f.command)?;
    Ok((
        format!("/v1/client/allocation/{}/exec", fmt::enc(id)),
        serde_json::json!({ "Task": f.task.trim(), "Cmd": cmd }),
    ))
}

/// What a finished exec said: its exit code and its output, decoded (lossily: a page shows
/// text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// The most of each stream a page shows.
pub const EXEC_SHOWN_BYTES: usize = 64 * 1024;

/// `text` cut to at most `EXEC_SHOWN_BYTES` (on a character boundary), saying so.
fn shown(mut text: String) -> String {
    if text.len() <= EXEC_SHOWN_BYTES {
        return text;
    }
    let all = text.len();
    let mut cut = EXEC_SHOWN_BYTES;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[cut: the first {cut} of {all} bytes are shown; `drover alloc exec` prints them all]"
    ));
    text
}

/// Reads the agent's `{"ExitCode", "Stdout", "Stderr"}` (base64) answer.
pub fn exec_output(body: &str) -> Result<ExecOutput, String> {
    use base64::Engine;
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("unreadable exec answer: {e}"))?;
    let dec = |k: &str| -> Result<String, String> {
        let raw = v[k].as_str().unwrap_or("");
        base64::engine::general_purpose::STANDARD
            .decode(raw)
            .map(|b| shown(String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| format!("unreadable {k} in the exec answer: {e}"))
    };
    Ok(ExecOutput {
        exit_code: v["ExitCode"].as_i64().unwrap_or(-1),
        stdout: dec("Stdout")?,
        stderr: dec("Stderr")?,
    })
}

/// `POST /ui/allocations/<id>/exec` -> `POST /v1/client/allocation/<id>/exec`; answers the
/// allocation page with the command's output (never swapped by the live refresh).
pub async fn alloc_exec(
    axum::Extension(srv): Srv,
    Path(raw): Path<String>,
    headers: HeaderMap,
    Form(f): Form<ExecForm>,
) -> Response {
    let (state, a) = match posted_alloc(&srv, &headers, &raw) {
        Ok(found) => found,
        Err(resp) => return *resp,
    };
    let (status, result) = match exec_request(&a.id, &f) {
        Err(e) => (StatusCode::BAD_REQUEST, Err(e)),
        Ok((path, body)) => match call_v1(&srv, Method::POST, &path, Some(body)).await {
            (s, text) if s.is_success() => match exec_output(&text) {
                Ok(o) => (StatusCode::OK, Ok(o)),
                Err(e) => (StatusCode::BAD_GATEWAY, Err(e)),
            },
            (s, text) => (s, Err(format!("{s}: {text}"))),
        },
    };
    let run = crate::pages::alloc::ExecRun {
        task: f.task.trim().to_string(),
        command: f.command,
        result,
    };
    let mut resp = crate::pages::alloc::page(&srv, &state, &a, None, Some(&run)).await;
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_same_origin_posts_are_accepted() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(same_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        let ok = [
            ("host", "127.0.0.1:4646"),
            ("origin", "http://127.0.0.1:4646"),
        ];
        assert!(same_origin(&headers(&ok)).is_ok());
        let evil = [
            ("host", "127.0.0.1:4646"),
            ("origin", "http://evil.example"),
        ];
        assert!(same_origin(&headers(&evil)).is_err());
        assert!(same_origin(&headers(&[("host", "127.0.0.1:4646")])).is_err());
    }

    #[test]
    fn the_drain_form_becomes_the_clis_drain_request() {
        let f = DrainForm {
            deadline: "1h".into(),
            ..Default::default()
        };
        assert_eq!(
            drain_body(&f).unwrap()["DrainSpec"]["Deadline"],
            3_600_000_000_000i64
        );
        let f = DrainForm {
            force: Some("true".into()),
            ignore_system_jobs: Some("true".into()),
            ..Default::default()
        };
        let b = drain_body(&f).unwrap();
        assert_eq!(
            (
                b["DrainSpec"]["Deadline"].as_i64(),
                b["DrainSpec"]["IgnoreSystemJobs"].as_bool()
            ),
            (Some(-1), Some(true))
        );
        let f = DrainForm {
            disable: Some("true".into()),
            ..Default::default()
        };
        assert!(drain_body(&f).unwrap()["DrainSpec"].is_null());
        let f = DrainForm {
            deadline: "soon".into(),
            ..Default::default()
        };
        assert!(drain_body(&f).unwrap_err().contains("invalid deadline"));
    }

    #[test]
    fn allocation_actions_become_the_clis_requests() {
        let f = AllocForm::default();
        let (m, p, b, _, done) = alloc_request("a/b", "restart", &f).unwrap();
        assert_eq!(
            (m, p.as_str(), done),
            (
                Method::PUT,
                "/v1/client/allocation/a%2Fb/restart",
                "alloc-restarted"
            )
        );
        assert_eq!(b["AllTasks"], true);
        let f = AllocForm {
            task: "web".into(),
            signal: "SIGHUP".into(),
        };
        let (_, p, b, _, _) = alloc_request("x", "signal", &f).unwrap();
        assert_eq!(p, "/v1/client/allocation/x/signal");
        assert_eq!(
            (b["Task"].as_str(), b["Signal"].as_str()),
            (Some("web"), Some("SIGHUP"))
        );
        let (_, p, _, _, _) = alloc_request("x", "stop", &f).unwrap();
        assert_eq!(p, "/v1/allocation/x/stop");
        let bad = AllocForm {
            task: "web".into(),
            signal: "SIGSEGV; rm".into(),
        };
        assert!(alloc_request("x", "signal", &bad).is_err());
        assert!(alloc_request("x", "exec", &f).is_err());
    }

    #[test]
    fn a_command_line_splits_into_words_like_a_shell_quotes_them() {
        assert_eq!(
            split_command("ls -l  local").unwrap(),
            ["ls", "-l", "local"]
        );
        assert_eq!(
            split_command(r#"sh -c 'echo "$HOME" | wc'"#).unwrap(),
            ["sh", "-c", r#"echo "$HOME" | wc"#]
        );
        assert_eq!(
            split_command(r#"echo "a \"b\" c" d\ e ''"#).unwrap(),
            ["echo", r#"a "b" c"#, "d e", ""]
        );
        assert!(split_command("echo 'open")
            .unwrap_err()
            .contains("not closed"));
        assert!(split_command("echo \"open")
            .unwrap_err()
            .contains("not closed"));
        assert!(split_command("   ").is_err());
        let f = ExecForm {
            task: "web".into(),
            command: "cat /etc/hostname".into(),
        };
        let (path, body) = exec_request("a/b", &f).unwrap();
        assert_eq!(path, "/v1/client/allocation/a%2Fb/exec");
        assert_eq!(
            body,
            serde_json::json!({"Task": "web", "Cmd": ["cat", "/etc/hostname"]})
        );
        let o = exec_output(r#"{"ExitCode": 3, "Stdout": "PGI+aGk8L2I+", "Stderr": ""}"#).unwrap();
        assert_eq!((o.exit_code, o.stdout.as_str()), (3, "<b>hi</b>"));
        assert!(exec_output(r#"{"Stdout": "%%%"}"#).is_err());
        let big = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "é".repeat(EXEC_SHOWN_BYTES),
        );
        let o = exec_output(&format!(r#"{{"Stdout": "{big}"}}"#)).unwrap();
        assert!(
            o.stdout.len() < EXEC_SHOWN_BYTES + 200,
            "{}",
            o.stdout.len()
        );
        assert!(o.stdout.ends_with("`drover alloc exec` prints them all]"));
        assert!(exec_output("not json").is_err());
    }
}
