//! Long-lived answers read as one JSON object per line (the event stream, an agent's log
//! monitor): opening one, and reading it object by object.

use super::*;

/// The longest line a stream may send before the client gives up on it.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// An open stream of JSON lines; `what` names it in errors ("event stream").
pub(crate) struct JsonLines {
    resp: reqwest::Response,
    addr: String,
    buf: Vec<u8>,
    what: &'static str,
}

impl JsonLines {
    /// The next object; `None` once the server ended the stream. Blank lines are skipped.
    pub(crate) async fn next<T: DeserializeOwned>(&mut self) -> Option<Result<T, ApiError>> {
        let what = self.what;
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).map_err(|e| ApiError::Decode {
                    addr: self.addr.clone(),
                    message: format!("{what}: a line that is not a frame: {e}"),
                }));
            }
            if self.buf.len() > MAX_LINE {
                return Some(Err(ApiError::Decode {
                    addr: self.addr.clone(),
                    message: format!("{what}: a line longer than {MAX_LINE} bytes"),
                }));
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return None,
                Err(e) => {
                    return Some(Err(ApiError::Decode {
                        addr: self.addr.clone(),
                        message: format!("the {what} broke off: {e}"),
                    }))
                }
            }
        }
    }
}

impl Client {
    /// `GET path?query` whose answer is a stream of JSON lines, open until dropped.
    pub(crate) async fn open_json_lines(
        &self,
        path: &str,
        query: &[(String, String)],
        what: &'static str,
    ) -> Result<JsonLines, ApiError> {
        // The request's timeout covers the whole body: a stream has none to speak of.
        let forever = Duration::from_secs(100 * 365 * 24 * 3600);
        let (resp, addr) = self
            .send::<()>(reqwest::Method::GET, path, query, None, forever, &[])
            .await?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let message = resp.text().await.unwrap_or_default().trim().to_string();
            return Err(ApiError::Status { status, message });
        }
        Ok(JsonLines {
            resp,
            addr,
            buf: Vec::new(),
            what,
        })
    }
}
