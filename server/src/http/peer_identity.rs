//! Who may call which internal route on the RPC listener, by the certificate the caller
//! presented (`tls { rpc = true }`; the listener has already checked it against the CA
//! and put what it is valid for into the request as a [`PeerCert`]).
//!
//! - peer routes (`/v1/internal/raft/*`, `/v1/internal/cluster/*`, and any other internal
//!   route this table does not know): a server's certificate, `server.<region>.nomad`;
//! - node routes (`/v1/internal/node/*`, what client agents call, and the load test's
//!   no-op): a client agent's or a server's (a follower forwards agents' calls);
//! - the `/v1` API on the RPC listener: any certificate from the CA (forwarded requests
//!   carry a server's; ACL tokens decide the rest, as on the HTTP listener).
//!
//! Without RPC TLS nothing is checked here (plain HTTP, Nomad's default).

use super::AppState;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drover_tls::PeerCert;

/// The kind of caller a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    Server,
    ServerOrClient,
    AnyCertificate,
}

/// What `path` needs, matched on its segments so `//v1//internal/...` is classified too.
fn needs(path: &str) -> Needs {
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    match (parts.next(), parts.next(), parts.next()) {
        (Some("v1"), Some("internal"), Some("node" | "bench")) => Needs::ServerOrClient,
        (Some("v1"), Some("internal"), _) => Needs::Server,
        _ => Needs::AnyCertificate,
    }
}

/// Whether a caller with `cert` may call `path`; `Err` is the refusal's sentence.
fn decide(path: &str, cert: Option<PeerCert>, region: &str) -> Result<(), String> {
    let Some(cert) = cert else {
        return Err("a client certificate is required on the RPC listener".into());
    };
    match needs(path) {
        Needs::AnyCertificate => Ok(()),
        Needs::ServerOrClient if cert.server || cert.client => Ok(()),
        Needs::ServerOrClient => Err(format!(
            "Permission denied: {path} needs a client agent's or a server's certificate \
             (client.{region}.nomad or server.{region}.nomad)"
        )),
        Needs::Server if cert.server => Ok(()),
        Needs::Server => Err(format!(
            "Permission denied: {path} is for servers only and needs a certificate for \
             server.{region}.nomad"
        )),
    }
}

/// The middleware, layered outermost on the RPC router: a refused call is a 403 with the
/// sentence, before forwarding or any handler runs.
pub async fn check(State(srv): State<AppState>, req: Request, next: Next) -> Response {
    let Some(tls) = srv.config.tls.as_ref().filter(|t| t.settings.rpc) else {
        return next.run(req).await;
    };
    let cert = req.extensions().get::<PeerCert>().copied();
    match decide(req.uri().path(), cert, &tls.settings.region) {
        Ok(()) => next.run(req).await,
        Err(msg) => (StatusCode::FORBIDDEN, msg).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: PeerCert = PeerCert {
        server: true,
        client: false,
    };
    const CLIENT: PeerCert = PeerCert {
        server: false,
        client: true,
    };
    const CLI: PeerCert = PeerCert {
        server: false,
        client: false,
    };

    #[test]
    fn peer_routes_take_only_a_servers_certificate() {
        for path in [
            "/v1/internal/raft/append",
            "/v1/internal/cluster/join",
            "//v1//internal/raft/vote",
            "/v1/internal/something-new",
        ] {
            assert!(decide(path, Some(SERVER), "global").is_ok(), "{path}");
            let e = decide(path, Some(CLIENT), "global").unwrap_err();
            assert!(e.contains("server.global.nomad"), "{path}: {e}");
            assert!(decide(path, Some(CLI), "global").is_err(), "{path}");
        }
    }

    #[test]
    fn node_routes_take_a_client_agents_or_a_servers_certificate() {
        for path in [
            "/v1/internal/node/register",
            "/v1/internal/node/abc/heartbeat",
            "/v1/internal/bench/noop",
        ] {
            assert!(decide(path, Some(SERVER), "global").is_ok(), "{path}");
            assert!(decide(path, Some(CLIENT), "global").is_ok(), "{path}");
            let e = decide(path, Some(CLI), "eu").unwrap_err();
            assert!(e.contains("client.eu.nomad"), "{path}: {e}");
        }
    }

    #[test]
    fn the_api_takes_any_certificate_of_the_ca_but_not_none() {
        assert!(decide("/v1/jobs", Some(CLI), "global").is_ok());
        assert!(decide("/v1/internals", Some(CLI), "global").is_ok());
        assert!(decide("/v1/jobs", None, "global").is_err());
    }
}
