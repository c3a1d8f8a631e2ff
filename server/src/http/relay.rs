//! Relaying a request to another Drover process over HTTP, shared by `forward.rs` (a
//! follower sends a request to the leader's RPC listener) and `client_proxy.rs` (a server
//! sends `/v1/client/*` to the agent running the allocation).
//!
//! One place builds the outgoing request (same method, path and query; end-to-end headers
//! copied, hop-by-hop ones dropped; the relay's own mark added) and turns the answer back
//! into a response (status and end-to-end headers), either streamed as it arrives or read
//! whole first.

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use std::time::Duration;

/// Headers that describe one connection rather than the message (RFC 9110 section 7.6.1),
/// plus `host` and `content-length`, which the outgoing request and the response set
/// for themselves, and `expect`: the relay already holds the whole body.
const HOP_BY_HOP: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::CONTENT_LENGTH,
    header::EXPECT,
];

/// `headers` without the hop-by-hop ones, including any a `Connection` header names.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if HOP_BY_HOP.contains(name) || named.iter().any(|n| n == name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// A request to relay: where to, with which client, and how the relay marks it.
pub struct Relay<'a> {
    pub client: &'a reqwest::Client,
    /// `http` or `https` (a server's RPC listener with `tls { rpc = true }`).
    pub scheme: &'static str,
    /// `host:port` of the process that answers.
    pub addr: &'a str,
    /// The header telling the receiver this request was relayed once already.
    pub mark: &'static str,
    /// The longest the whole exchange may take; `None` for no limit (log streams).
    pub timeout: Option<Duration>,
}

impl Relay<'_> {
    /// Sends the request described by `parts` with `body` to `self.addr`: same method,
    /// path and query, the end-to-end headers of `parts`, and the relay's mark.
    pub async fn send(&self, parts: &Parts, body: Bytes) -> reqwest::Result<reqwest::Response> {
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut headers = end_to_end(&parts.headers);
        headers.insert(
            HeaderName::from_static(self.mark),
            HeaderValue::from_static("1"),
        );
        let mut out = self
            .client
            .request(
                parts.method.clone(),
                format!("{}://{}{pq}", self.scheme, self.addr),
            )
            .headers(headers)
            .body(body);
        if let Some(t) = self.timeout {
            out = out.timeout(t);
        }
        out.send().await
    }
}

/// The status and end-to-end headers of `resp`, ready for a body.
fn head(resp: &reqwest::Response) -> axum::http::response::Builder {
    let mut builder = Response::builder().status(resp.status());
    if let Some(headers) = builder.headers_mut() {
        *headers = end_to_end(resp.headers());
    }
    builder
}

/// `resp` as a response whose body streams as it arrives (log `follow=true` streams);
/// if the far side breaks off, the stream ends with an error.
pub fn streamed(resp: reqwest::Response) -> Response {
    let builder = head(&resp);
    let stream = futures_util::stream::unfold(resp, |mut resp| async move {
        match resp.chunk().await {
            Ok(Some(c)) => Some((Ok::<_, std::io::Error>(c), resp)),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), resp)),
        }
    });
    finish(builder, Body::from_stream(stream))
}

/// `resp` read whole first, so a caller learns of a broken-off answer before it
/// answers (and may send the request again).
pub async fn buffered(resp: reqwest::Response) -> reqwest::Result<Response> {
    let builder = head(&resp);
    let body = resp.bytes().await?;
    Ok(finish(builder, Body::from(body)))
}

fn finish(builder: axum::http::response::Builder, body: Body) -> Response {
    // The status and headers came from a parsed response, so they are valid; should the
    // builder still refuse them, answer with the sentence rather than panic.
    builder.body(body).unwrap_or_else(|e| {
        let mut r = Response::new(Body::from(format!(
            "relaying the answer failed: its status or headers were refused ({e})"
        )));
        *r.status_mut() = StatusCode::BAD_GATEWAY;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hop_by_hop_headers_are_dropped_and_end_to_end_ones_kept() {
        let out = end_to_end(&map(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("host", "10.0.0.1:4646"),
            ("content-length", "12"),
            ("expect", "100-continue"),
            ("x-private", "only for this hop"),
            ("content-type", "application/json"),
            ("x-nomad-index", "42"),
            ("x-nomad-token", "secret"),
            ("accept", "text/plain"),
            ("accept", "application/json"),
        ]));
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            ["content-type", "x-nomad-index", "x-nomad-token", "accept"]
        );
        assert_eq!(out.get_all("accept").iter().count(), 2);
    }

    /// An HTTP server on a free loopback port that answers every request with the
    /// request's headers as `name: value` lines, plus hop-by-hop headers of its own.
    async fn echo_server() -> String {
        use axum::response::IntoResponse;
        let app = axum::Router::new().fallback(|headers: HeaderMap| async move {
            let lines: Vec<String> = headers
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("?")))
                .collect();
            (
                [
                    ("x-nomad-index", "7"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "1"),
                ],
                lines.join("\n"),
            )
                .into_response()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn a_relayed_request_carries_end_to_end_headers_and_the_mark_and_so_does_the_answer() {
        let addr = echo_server().await;
        let req = axum::http::Request::builder()
            .method("PUT")
            .uri("/v1/jobs?region=global")
            .header("x-nomad-token", "secret")
            .header("content-type", "application/json")
            .header("connection", "x-private")
            .header("x-private", "only for this hop")
            .header("host", "elsewhere:1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let client = reqwest::Client::new();
        let relay = Relay {
            client: &client,
            scheme: "http",
            addr: &addr,
            mark: "x-test-relayed",
            timeout: Some(Duration::from_secs(30)),
        };
        let resp = relay.send(&parts, Bytes::from_static(b"{}")).await.unwrap();
        let resp = buffered(resp).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["x-nomad-index"], "7");
        assert!(
            resp.headers().get("x-hop").is_none(),
            "{:?}",
            resp.headers()
        );
        assert!(resp.headers().get("connection").is_none());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let seen = String::from_utf8_lossy(&body);
        assert!(seen.contains("x-nomad-token: secret"), "{seen}");
        assert!(seen.contains("content-type: application/json"), "{seen}");
        assert!(seen.contains("x-test-relayed: 1"), "{seen}");
        assert!(seen.contains(&format!("host: {addr}")), "{seen}");
        assert!(!seen.contains("x-private"), "{seen}");
    }
}
