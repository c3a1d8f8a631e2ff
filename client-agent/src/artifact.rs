//! `artifact` blocks: files downloaded over HTTP(S) into the task directory before the
//! task starts (default destination `local/`).
//!
//! Archives (`.tar`, `.tar.gz`, `.tgz`, `.tar.bz2`, `.tar.xz`, `.zip`) are unpacked into the
//! destination unless `mode = "file"` or `options { archive = "false" }`; unpacking runs
//! the host's `tar`/`unzip` rather than linking archive formats into the agent. Checksums
//! (`options { checksum = ... }`) are not verified yet; a failure names the artifact.

use crate::taskenv::TaskEnv;
use api::TaskArtifact;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// How long one download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Where an artifact goes: `relative_dest` under the task dir, never outside it.
fn destination(task_dir: &Path, art: &TaskArtifact, env: &TaskEnv) -> Result<PathBuf, String> {
    let rel = env.interpolate(art.relative_dest.trim());
    let rel = if rel.is_empty() { "local/".into() } else { rel };
    let rel_path = Path::new(rel.trim_start_matches('/'));
    if rel_path
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "artifact destination {rel:?} escapes the task directory"
        ));
    }
    Ok(task_dir.join(rel_path))
}

/// The last path segment of a URL, without its query.
fn file_name_of(url: &reqwest::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.next_back().map(str::to_string))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "artifact".into())
}

/// The unpacking command for an archive's name, if it is one.
fn unpack_command(name: &str) -> Option<&'static [&'static str]> {
    let n = name.to_ascii_lowercase();
    if n.ends_with(".zip") {
        Some(&["unzip", "-o", "-q"])
    } else if [
        ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar",
    ]
    .iter()
    .any(|s| n.ends_with(s))
    {
        Some(&["tar", "-xf"])
    } else {
        None
    }
}

async fn unpack(archive: &Path, into: &Path, cmd: &[&str]) -> Result<(), String> {
    let mut c = tokio::process::Command::new(cmd[0]);
    c.args(&cmd[1..]).arg(archive);
    if cmd[0] == "unzip" {
        c.arg("-d").arg(into);
    } else {
        c.arg("-C").arg(into);
    }
    let out = c
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", cmd[0]))?;
    if !out.status.success() {
        return Err(format!(
            "unpacking {} failed: {}",
            archive.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Fetches one artifact.
pub async fn fetch(
    client: &reqwest::Client,
    art: &TaskArtifact,
    env: &TaskEnv,
    task_dir: &Path,
) -> Result<(), String> {
    let source = env.interpolate(art.getter_source.trim());
    let url = reqwest::Url::parse(&source)
        .map_err(|e| format!("artifact source {source:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "artifact source {source:?}: only http and https are supported"
        ));
    }
    let dest = destination(task_dir, art, env)?;
    let mode = art.getter_mode.trim();
    let name = file_name_of(&url);
    let (dir, file) = if mode == "file" {
        let parent = dest.parent().unwrap_or(task_dir).to_path_buf();
        (parent, dest.clone())
    } else {
        (dest.clone(), dest.join(&name))
    };
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut resp = client
        .get(url.clone())
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("GET {source}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!(
            "GET {source}: bad response code: {}",
            resp.status()
        ));
    }
    let tmp = file.with_extension("drover-download");
    let mut out = tokio::fs::File::create(&tmp)
        .await
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("GET {source}: {e}"))?
    {
        out.write_all(&chunk)
            .await
            .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    }
    out.flush()
        .await
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    drop(out);
    let archive_off = art
        .getter_options
        .get("archive")
        .is_some_and(|v| v == "false");
    match unpack_command(&name).filter(|_| mode != "file" && !archive_off) {
        Some(cmd) => {
            let res = unpack(&tmp, &dir, cmd).await;
            let _ = tokio::fs::remove_file(&tmp).await;
            res
        }
        None => tokio::fs::rename(&tmp, &file)
            .await
            .map_err(|e| format!("moving the download to {}: {e}", file.display())),
    }
}

/// Fetches every artifact of a task, in order; the first failure stops.
pub async fn fetch_all(
    artifacts: &[TaskArtifact],
    env: &TaskEnv,
    task_dir: &Path,
) -> Result<(), String> {
    if artifacts.is_empty() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    for art in artifacts {
        fetch(&client, art, env, task_dir).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_stay_inside_the_task_dir() {
        let env = TaskEnv::default();
        let mut a = TaskArtifact::default();
        let d = destination(Path::new("/t"), &a, &env).unwrap();
        assert_eq!(d, Path::new("/t/local/"));
        a.relative_dest = "local/conf".into();
        assert_eq!(
            destination(Path::new("/t"), &a, &env).unwrap(),
            Path::new("/t/local/conf")
        );
        a.relative_dest = "../../etc".into();
        assert!(destination(Path::new("/t"), &a, &env).is_err());
    }

    #[test]
    fn archives_are_recognised_by_name() {
        assert!(unpack_command("x.tar.gz").is_some());
        assert!(unpack_command("x.ZIP").is_some());
        assert!(unpack_command("x.txt").is_none());
    }

    #[tokio::test]
    async fn a_file_is_downloaded_into_local_and_a_404_is_an_error() {
        let app = axum::Router::new().route(
            "/files/hello.txt",
            axum::routing::get(|| async { "hello artifact" }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let tmp = tempfile::tempdir().unwrap();
        let env = TaskEnv::default();
        let ok = TaskArtifact {
            getter_source: format!("http://{addr}/files/hello.txt"),
            ..Default::default()
        };
        fetch_all(std::slice::from_ref(&ok), &env, tmp.path())
            .await
            .unwrap();
        let got = std::fs::read_to_string(tmp.path().join("local/hello.txt")).unwrap();
        assert_eq!(got, "hello artifact");
        let missing = TaskArtifact {
            getter_source: format!("http://{addr}/files/nope.txt"),
            ..Default::default()
        };
        let err = fetch_all(&[missing], &env, tmp.path()).await.unwrap_err();
        assert!(err.contains("404"), "{err}");
    }
}
