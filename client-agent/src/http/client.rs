//! The CLI's client for the client endpoints (through any server or the agent itself).
//!
//! Like Nomad's API client it takes its TLS from `NOMAD_CACERT`, `NOMAD_CLIENT_CERT` and
//! `NOMAD_CLIENT_KEY` (the CLI puts its `-ca-cert`, `-client-cert` and `-client-key` flags
//! there), so `https://` addresses work with a private CA and client certificates.

use std::time::Duration;

/// A small HTTP client for the client endpoints (through any server or the agent
/// itself), for the CLI: errors are the server's sentence with its status.
#[derive(Debug, Clone)]
pub struct ClientApi {
    base: String,
    /// The HTTP client, or why the TLS settings could not be used (told on first use).
    http: Result<reqwest::Client, String>,
    /// `X-Nomad-Token`, when the servers check ACLs.
    token: Option<String>,
}

impl ClientApi {
    /// `base` is an address such as `http://127.0.0.1:4646`.
    pub fn new(base: impl AsRef<str>) -> Self {
        let base = base.as_ref();
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        let http = match drover_tls::cli_dialer_from_env() {
            Ok(None) => builder.build().map_err(|e| e.to_string()),
            Ok(Some(tls)) => builder
                .use_preconfigured_tls(tls)
                .build()
                .map_err(|e| format!("cannot set up TLS: {e}")),
            Err(e) => Err(e.to_string()),
        };
        ClientApi {
            base,
            http,
            token: None,
        }
    }

    /// Send `X-Nomad-Token: <secret>` with every request.
    pub fn with_token(mut self, secret: Option<String>) -> Self {
        self.token = secret.filter(|s| !s.is_empty());
        self
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, String> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = self
            .http
            .as_ref()
            .map_err(Clone::clone)?
            .request(method, &url);
        if let Some(t) = &self.token {
            req = req.header("X-Nomad-Token", t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.base))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("{} ({status})", text.trim()));
        }
        Ok(resp)
    }

    /// A JSON request and its JSON answer.
    pub async fn json(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, String> {
        let m = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let resp = self.send(m, path_and_query, body).await?;
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("bad JSON answer: {e}"))
    }

    /// A GET whose body is handed to `sink` chunk by chunk as it arrives.
    pub async fn stream(
        &self,
        path_and_query: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<(), String> {
        let mut resp = self
            .send(reqwest::Method::GET, path_and_query, None)
            .await?;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("the stream broke off: {e}"))?
        {
            sink(&chunk);
        }
        Ok(())
    }
}
