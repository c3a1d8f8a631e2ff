//! Running one health check of a `provider = "nomad"` service: an HTTP request that must
//! answer 2xx, or a TCP connection that must open, each within the check's timeout.
//!
//! A check never panics on what a job says: a method, header or URL that cannot be used
//! is a failed check whose output is the sentence saying why.

use api::{CHECK_STATUS_FAILURE, CHECK_STATUS_SUCCESS};
use std::time::Duration;

/// At most this much of an HTTP check's answer is read and kept as its output.
pub const MAX_OUTPUT: usize = 4096;

/// What a check does, with its address resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http {
        url: String,
        method: String,
        headers: Vec<(String, Vec<String>)>,
        body: String,
        tls_skip_verify: bool,
    },
    Tcp {
        /// `host:port` (IPv6 hosts in brackets).
        addr: String,
    },
    /// A check this agent cannot run (e.g. `script` or `grpc`): it always fails with
    /// this sentence.
    Unsupported(String),
}

/// The result of one run of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// [`api::CHECK_STATUS_SUCCESS`] or [`api::CHECK_STATUS_FAILURE`].
    pub status: &'static str,
    /// The HTTP status code (0 for TCP checks and when no answer came).
    pub status_code: i64,
    /// At most [`MAX_OUTPUT`] bytes.
    pub output: String,
}

impl Outcome {
    fn failure(output: impl Into<String>) -> Self {
        Outcome {
            status: CHECK_STATUS_FAILURE,
            status_code: 0,
            output: bounded(output.into()),
        }
    }

    pub fn passed(&self) -> bool {
        self.status == CHECK_STATUS_SUCCESS
    }
}

/// Cuts `s` to at most [`MAX_OUTPUT`] bytes on a character boundary.
fn bounded(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `host:port`, with an IPv6 host in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// The URL of an HTTP check: `protocol://host:port/path`.
pub fn http_url(protocol: &str, host: &str, port: u16, path: &str) -> String {
    let scheme = if protocol.eq_ignore_ascii_case("https") {
        "https"
    } else {
        "http"
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    format!("{scheme}://{}{path}", join_host_port(host, port))
}

/// Runs `probe` once; it has `timeout` in all (connect, request and reading the answer).
pub async fn run(probe: &Probe, timeout: Duration) -> Outcome {
    match probe {
        Probe::Tcp { addr } => tcp(addr, timeout).await,
        Probe::Http {
            url,
            method,
            headers,
            body,
            tls_skip_verify,
        } => {
            match tokio::time::timeout(
                timeout,
                http(url, method, headers, body, *tls_skip_verify, timeout),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => Outcome::failure(format!(
                    "nomad: {method} {url}: no answer within {timeout:?}"
                )),
            }
        }
        Probe::Unsupported(why) => Outcome::failure(why.clone()),
    }
}

async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Outcome {
            status: CHECK_STATUS_SUCCESS,
            status_code: 0,
            output: "nomad: tcp ok".into(),
        },
        Ok(Err(e)) => Outcome::failure(format!("nomad: dial tcp {addr}: {e}")),
        Err(_) => Outcome::failure(format!(
            "nomad: dial tcp {addr}: no connection within {timeout:?}"
        )),
    }
}

async fn http(
    url: &str,
    method: &str,
    headers: &[(String, Vec<String>)],
    body: &str,
    tls_skip_verify: bool,
    timeout: Duration,
) -> Outcome {
    let method_name = if method.trim().is_empty() {
        "GET"
    } else {
        method.trim()
    };
    let Ok(m) = reqwest::Method::from_bytes(method_name.to_ascii_uppercase().as_bytes()) else {
        return Outcome::failure(format!("nomad: {method_name:?} is not an HTTP method"));
    };
    let client = match reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .danger_accept_invalid_certs(tls_skip_verify)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => return Outcome::failure(format!("nomad: cannot make an HTTP client: {e}")),
    };
    let mut req = client.request(m.clone(), url);
    for (name, values) in headers {
        let Ok(name) = reqwest::header::HeaderName::from_bytes(name.as_bytes()) else {
            return Outcome::failure(format!("nomad: {name:?} is not an HTTP header name"));
        };
        for v in values {
            let Ok(value) = reqwest::header::HeaderValue::from_str(v) else {
                return Outcome::failure(format!("nomad: header {name} has an invalid value"));
            };
            req = req.header(name.clone(), value);
        }
    }
    if !body.is_empty() {
        req = req.body(body.to_string());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::failure(format!("nomad: {m} {url}: {}", error_chain(&e))),
    };
    let code = resp.status();
    let mut out: Vec<u8> = Vec::new();
    while out.len() < MAX_OUTPUT {
        match resp.chunk().await {
            Ok(Some(c)) => out.extend_from_slice(&c[..c.len().min(MAX_OUTPUT - out.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let output = if text.trim().is_empty() {
        format!("nomad: http {}", code.as_u16())
    } else {
        text
    };
    Outcome {
        status: if code.is_success() {
            CHECK_STATUS_SUCCESS
        } else {
            CHECK_STATUS_FAILURE
        },
        status_code: i64::from(code.as_u16()),
        output: bounded(output),
    }
}

/// The error and its causes in one sentence (reqwest's top-level message alone says
/// little, e.g. "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-route HTTP server answering every request with `status` and `body`.
    async fn server(status: u16, body: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        port
    }

    fn http_probe(port: u16) -> Probe {
        Probe::Http {
            url: http_url("http", "127.0.0.1", port, "health"),
            method: String::new(),
            headers: vec![("X-Probe".into(), vec!["1".into()])],
            body: String::new(),
            tls_skip_verify: false,
        }
    }

    #[tokio::test]
    async fn http_check_passes_on_2xx_and_keeps_the_body() {
        let port = server(200, "all good").await;
        let o = run(&http_probe(port), Duration::from_secs(2)).await;
        assert!(o.passed(), "{o:?}");
        assert_eq!(o.status_code, 200);
        assert_eq!(o.output, "all good");
    }

    #[tokio::test]
    async fn http_check_fails_on_500() {
        let port = server(500, "").await;
        let o = run(&http_probe(port), Duration::from_secs(2)).await;
        assert!(!o.passed());
        assert_eq!(o.status_code, 500);
        assert_eq!(o.output, "nomad: http 500");
    }

    #[tokio::test]
    async fn http_check_fails_when_no_answer_comes_within_the_timeout() {
        // Accepts connections but never answers.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let started = std::time::Instant::now();
        let o = run(&http_probe(port), Duration::from_millis(300)).await;
        assert!(!o.passed());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(o.status_code, 0);
    }

    #[tokio::test]
    async fn checks_fail_with_a_sentence_when_the_connection_is_refused() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let o = run(&http_probe(port), Duration::from_secs(2)).await;
        assert!(!o.passed());
        assert!(o.output.contains("refused"), "{}", o.output);
        let t = run(
            &Probe::Tcp {
                addr: join_host_port("127.0.0.1", port),
            },
            Duration::from_secs(2),
        )
        .await;
        assert!(!t.passed());
        assert!(t.output.contains("refused"), "{}", t.output);
    }

    #[tokio::test]
    async fn tcp_check_passes_when_the_port_accepts() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = join_host_port("127.0.0.1", l.local_addr().unwrap().port());
        let o = run(&Probe::Tcp { addr }, Duration::from_secs(2)).await;
        assert!(o.passed(), "{o:?}");
        assert_eq!(o.output, "nomad: tcp ok");
    }

    #[tokio::test]
    async fn a_bad_method_or_header_is_a_failed_check_not_a_panic() {
        let port = server(200, "").await;
        let mut p = http_probe(port);
        if let Probe::Http { method, .. } = &mut p {
            *method = "GE T".into();
        }
        assert!(!run(&p, Duration::from_secs(1)).await.passed());
        let mut p = http_probe(port);
        if let Probe::Http { headers, .. } = &mut p {
            headers.push(("bad header".into(), vec!["x".into()]));
        }
        let o = run(&p, Duration::from_secs(1)).await;
        assert!(!o.passed());
        assert!(o.output.contains("header"), "{}", o.output);
    }

    #[test]
    fn urls_and_addresses_bracket_ipv6_hosts() {
        assert_eq!(
            http_url("https", "::1", 80, "/x?y=1"),
            "https://[::1]:80/x?y=1"
        );
        assert_eq!(http_url("", "10.0.0.1", 8080, ""), "http://10.0.0.1:8080/");
        assert_eq!(join_host_port("10.0.0.1", 1), "10.0.0.1:1");
    }

    #[test]
    fn output_is_bounded_on_a_char_boundary() {
        let s = "é".repeat(MAX_OUTPUT);
        let b = bounded(s);
        assert!(b.len() <= MAX_OUTPUT);
        assert!(b.chars().all(|c| c == 'é'));
    }
}
