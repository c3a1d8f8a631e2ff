//! Nomad Variables: `/v1/vars` and `/v1/var/:path`.

use super::*;
use crate::url::encode;
use crate::{Variable, VariableMetadata};

/// `/v1/var/<path>`: each segment encoded, the slashes kept (as Nomad's router takes them).
fn var_path(path: &str) -> String {
    let segments: Vec<String> = path.split('/').map(encode).collect();
    format!("/v1/var/{}", segments.join("/"))
}

fn write_query(namespace: Option<&str>, cas: Option<u64>) -> Vec<(String, String)> {
    let mut q = Vec::new();
    if let Some(ns) = namespace {
        q.push(("namespace".to_string(), ns.to_string()));
    }
    if let Some(cas) = cas {
        q.push(("cas".to_string(), cas.to_string()));
    }
    q
}

/// What a variable write ended in: written, or refused by its check-and-set index (the
/// server answered 409 with the variable as it is; `None` when it does not exist).
#[derive(Debug, Clone, PartialEq)]
pub enum VariableWrite {
    Written(Option<Variable>),
    Conflict(Option<Variable>),
}

impl Client {
    /// `GET /v1/vars`: the metadata of the variables under `prefix`; `namespace` `None`
    /// means `default`, `Some("*")` every namespace.
    pub async fn variables(
        &self,
        prefix: &str,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Vec<VariableMetadata>, QueryMeta), ApiError> {
        let mut opts = opts.clone();
        if !prefix.is_empty() {
            opts.prefix = Some(prefix.to_string());
        }
        self.get(&with_namespace("/v1/vars", namespace), &opts)
            .await
    }

    /// `GET /v1/var/:path`: one variable with its items.
    pub async fn variable(
        &self,
        path: &str,
        namespace: Option<&str>,
        opts: &QueryOptions,
    ) -> Result<(Variable, QueryMeta), ApiError> {
        self.get(&with_namespace(&var_path(path), namespace), opts)
            .await
    }

    /// `PUT /v1/var/:path[?cas=N]`: create or replace a variable's items. With `cas`, only
    /// if its modify index is `cas` (0: only if it does not exist).
    pub async fn put_variable(
        &self,
        var: &Variable,
        cas: Option<u64>,
    ) -> Result<VariableWrite, ApiError> {
        let ns = Some(var.namespace.as_str()).filter(|n| !n.is_empty());
        self.variable_write(
            reqwest::Method::PUT,
            &var.path,
            &write_query(ns, cas),
            Some(var),
        )
        .await
    }

    /// `DELETE /v1/var/:path[?cas=N]`: remove a variable (only at modify index `cas`).
    pub async fn delete_variable(
        &self,
        path: &str,
        namespace: Option<&str>,
        cas: Option<u64>,
    ) -> Result<VariableWrite, ApiError> {
        self.variable_write::<Variable>(
            reqwest::Method::DELETE,
            path,
            &write_query(namespace, cas),
            None,
        )
        .await
    }

    async fn variable_write<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&B>,
    ) -> Result<VariableWrite, ApiError> {
        let (resp, addr) = self
            .send(
                method,
                &var_path(path),
                query,
                body,
                Duration::from_secs(60),
                &[],
            )
            .await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ApiError::Decode {
            addr: addr.clone(),
            message: e.to_string(),
        })?;
        let parse = |bytes: &[u8]| -> Result<Option<Variable>, ApiError> {
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                return Ok(None);
            }
            let v: Option<Variable> =
                serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
                    addr: addr.clone(),
                    message: e.to_string(),
                })?;
            Ok(v.filter(|v| v.modify_index > 0 || !v.items.is_empty()))
        };
        match status {
            200..=299 => Ok(VariableWrite::Written(parse(&bytes)?)),
            409 => Ok(VariableWrite::Conflict(parse(&bytes)?)),
            _ => Err(ApiError::Status {
                status,
                message: String::from_utf8_lossy(&bytes).trim().to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::var_path;

    #[test]
    fn variable_paths_keep_their_slashes_and_encode_the_rest() {
        assert_eq!(var_path("nomad/jobs/example"), "/v1/var/nomad/jobs/example");
        assert_eq!(var_path("a b/c?"), "/v1/var/a%20b/c%3F");
    }
}
