//! The docker CLI: the local busybox image and the `docker run` floor.

use super::*;

pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new("docker")
        .args(args)
        .output()
        .context("running docker")?;
    if !o.status.success() {
        bail!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Builds [`IMAGE`] (`FROM scratch` + /bin/busybox) from a temp context; never pulls.
pub fn build_image() -> anyhow::Result<()> {
    anyhow::ensure!(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox is missing (apt-get install busybox-static)"
    );
    let ctx = tempfile::Builder::new()
        .prefix("drover-bench-image-")
        .tempdir()?;
    std::fs::copy("/bin/busybox", ctx.path().join("busybox"))?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\"]\n",
    )?;
    docker(&["build", "-q", "-t", IMAGE, &ctx.path().to_string_lossy()])?;
    Ok(())
}

/// `docker run --rm -d IMAGE busybox sleep 1`: (CLI return time, time until `docker
/// inspect` says running). `-d` returns once the container has started, so the two are
/// nearly the same; the second costs one more CLI round trip.
pub fn docker_run_floor(i: usize) -> anyhow::Result<(Duration, Duration)> {
    let name = format!("drover-bench-floor-{}-{i}", std::process::id());
    let t = Instant::now();
    let run = docker(&[
        "run",
        "--rm",
        "-d",
        "--name",
        &name,
        IMAGE,
        "/bin/busybox",
        "sleep",
        "1",
    ]);
    let returned = t.elapsed();
    if let Err(e) = run {
        let _ = docker(&["rm", "-f", &name]);
        return Err(e);
    }
    let running = loop {
        match docker(&["inspect", "-f", "{{.State.Running}}", &name]) {
            Ok(s) if s == "true" => break t.elapsed(),
            // Already exited and removed: it did run.
            Err(_) => break t.elapsed(),
            _ if t.elapsed() > Duration::from_secs(30) => bail!("{name} never ran"),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let _ = docker(&["rm", "-f", &name]);
    Ok((returned, running))
}
