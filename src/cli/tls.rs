//! `drover tls`: a private CA and agent certificates with Nomad's names and file names
//! (`nomad tls ca create`, `nomad tls cert create`), and the CLI's own TLS settings
//! (`-ca-cert`, `-client-cert`, `-client-key`, or `NOMAD_CACERT`, `NOMAD_CLIENT_CERT`,
//! `NOMAD_CLIENT_KEY`).

use clap::{Args, Subcommand};
use drover_tls::generate::{self, CertRequest, Role};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Work with the certificate authority: `ca create`.
    Ca {
        #[command(subcommand)]
        cmd: CaCommand,
    },
    /// Work with agent and CLI certificates: `cert create`.
    Cert {
        #[command(subcommand)]
        cmd: CertCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed CA: <domain>-agent-ca.pem and <domain>-agent-ca-key.pem in
    /// the current directory.
    Create(CaCreateArgs),
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create a server, client or CLI certificate signed by the CA, in the current
    /// directory (e.g. global-server-nomad.pem and global-server-nomad-key.pem).
    Create(CertCreateArgs),
}

#[derive(Debug, Args)]
pub struct CaCreateArgs {
    /// Days the CA is valid for.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// The cluster's domain, used in the file names.
    #[arg(long, default_value = "nomad")]
    pub domain: String,
    /// The CA's common name.
    #[arg(long = "common-name", default_value = "Nomad Agent CA")]
    pub common_name: String,
}

#[derive(Debug, Args)]
pub struct CertCreateArgs {
    /// A server certificate (server.<region>.nomad).
    #[arg(long, conflicts_with_all = ["client", "cli"])]
    pub server: bool,
    /// A client agent certificate (client.<region>.nomad).
    #[arg(long, conflicts_with = "cli")]
    pub client: bool,
    /// A certificate for the command line (cli.<region>.nomad).
    #[arg(long)]
    pub cli: bool,
    /// The region the certificate is for.
    #[arg(long, default_value = "global")]
    pub region: String,
    /// The cluster's domain.
    #[arg(long, default_value = "nomad")]
    pub domain: String,
    /// Days the certificate is valid for.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// The CA certificate [default: <domain>-agent-ca.pem].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The CA's key [default: <domain>-agent-ca-key.pem].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Another DNS name for the certificate (repeatable); localhost is always included.
    #[arg(long = "additional-dnsname", value_name = "NAME")]
    pub additional_dnsname: Vec<String>,
    /// Another IP address for the certificate (repeatable); 127.0.0.1 is always included
    /// for servers and clients.
    #[arg(long = "additional-ipaddress", value_name = "IP")]
    pub additional_ipaddress: Vec<IpAddr>,
}

/// Runs a `drover tls` command; returns the exit code.
pub fn run(cmd: TlsCommand) -> i32 {
    let res = match cmd {
        TlsCommand::Ca {
            cmd: CaCommand::Create(a),
        } => ca_create(a, Path::new(".")),
        TlsCommand::Cert {
            cmd: CertCommand::Create(a),
        } => cert_create(a, Path::new(".")),
    };
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// Refuses when any of `names` exists in `dir`, so nothing is half-written.
fn refuse_existing(dir: &Path, names: &[&str]) -> anyhow::Result<()> {
    for n in names {
        let p = dir.join(n);
        if p.symlink_metadata().is_ok() {
            anyhow::bail!(
                "refusing to overwrite {}: it exists already; move it away first",
                p.display()
            );
        }
    }
    Ok(())
}

/// Writes a new file (never over an existing one); keys are readable by their owner only.
fn write_new(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "refusing to overwrite {}: it exists already; move it away first",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot write {}: {e}", path.display())
        }
    })?;
    f.write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

fn ca_create(a: CaCreateArgs, dir: &Path) -> anyhow::Result<()> {
    let cert_name = format!("{}-agent-ca.pem", a.domain);
    let key_name = format!("{}-agent-ca-key.pem", a.domain);
    refuse_existing(dir, &[&cert_name, &key_name])?;
    let pem = generate::ca(&a.common_name, a.days)?;
    write_new(&dir.join(&cert_name), &pem.cert, false)?;
    write_new(&dir.join(&key_name), &pem.key, true)?;
    println!("==> CA certificate saved to: {cert_name}");
    println!("==> CA certificate key saved to: {key_name}");
    Ok(())
}

fn cert_create(a: CertCreateArgs, dir: &Path) -> anyhow::Result<()> {
    let role = match (a.server, a.client, a.cli) {
        (true, _, _) => Role::Server,
        (_, true, _) => Role::Client,
        (_, _, true) => Role::Cli,
        _ => anyhow::bail!("say which certificate to create: -server, -client or -cli"),
    };
    let ca =
        a.ca.unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca.pem", a.domain)));
    let key = a
        .key
        .unwrap_or_else(|| PathBuf::from(format!("{}-agent-ca-key.pem", a.domain)));
    let read = |p: &Path, what: &str| {
        std::fs::read_to_string(p).map_err(|e| {
            anyhow::anyhow!(
                "cannot read the {what} {}: {e} (create one with `drover tls ca create`, or \
                 pass -ca and -key)",
                p.display()
            )
        })
    };
    let (ca_pem, key_pem) = (read(&ca, "CA file")?, read(&key, "CA key file")?);
    let req = CertRequest {
        role,
        region: a.region,
        domain: a.domain,
        additional_dns: a.additional_dnsname,
        additional_ips: a.additional_ipaddress,
        days: a.days,
    };
    let (cert_name, key_name) = req.file_names();
    refuse_existing(dir, &[&cert_name, &key_name])?;
    let pem = generate::cert(
        &req,
        &ca_pem,
        &key_pem,
        &ca.display().to_string(),
        &key.display().to_string(),
    )?;
    if role == Role::Server {
        println!(
            "==> WARNING: a server certificate lets its holder act as a server and read all \
             of the cluster's state. Give it to server hosts only, and keep it as safe as \
             the CA's key."
        );
    }
    println!(
        "==> Using CA file {} and CA key {}",
        ca.display(),
        key.display()
    );
    write_new(&dir.join(&cert_name), &pem.cert, false)?;
    write_new(&dir.join(&key_name), &pem.key, true)?;
    println!("==> Certificate saved to: {cert_name}");
    println!("==> Certificate key saved to: {key_name}");
    Ok(())
}

/// Puts the CLI's TLS flags where every client of this process reads them (Nomad's
/// environment variables): flags win over what the environment says.
pub fn export_flags(
    ca_cert: &Option<String>,
    client_cert: &Option<String>,
    client_key: &Option<String>,
) {
    for (flag, var) in [
        (ca_cert, drover_tls::ENV_CA_CERT),
        (client_cert, drover_tls::ENV_CLIENT_CERT),
        (client_key, drover_tls::ENV_CLIENT_KEY),
    ] {
        if let Some(v) = flag.as_ref().filter(|v| !v.is_empty()) {
            // One thread: this runs before any runtime starts.
            std::env::set_var(var, v);
        }
    }
}

/// The API client for `address`, over TLS when a CA or client certificate is set.
pub fn api_client(address: &str) -> anyhow::Result<api::Client> {
    match drover_tls::cli_dialer_from_env().map_err(anyhow::Error::msg)? {
        None => Ok(api::Client::new(address)),
        Some(tls) => {
            api::Client::with_addresses_tls(&[address.to_string()], tls).map_err(anyhow::Error::msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_args(server: bool, client: bool, cli: bool) -> CertCreateArgs {
        CertCreateArgs {
            server,
            client,
            cli,
            region: "global".into(),
            domain: "nomad".into(),
            days: 30,
            ca: None,
            key: None,
            additional_dnsname: vec![],
            additional_ipaddress: vec![],
        }
    }

    #[test]
    fn files_get_nomads_names_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let ca = || CaCreateArgs {
            days: 30,
            domain: "nomad".into(),
            common_name: "Test CA".into(),
        };
        ca_create(ca(), dir.path()).unwrap();
        assert!(dir.path().join("nomad-agent-ca.pem").exists());
        let e = ca_create(ca(), dir.path()).unwrap_err().to_string();
        assert!(e.starts_with("refusing to overwrite"), "{e}");
        let mut a = cert_args(true, false, false);
        a.ca = Some(dir.path().join("nomad-agent-ca.pem"));
        a.key = Some(dir.path().join("nomad-agent-ca-key.pem"));
        cert_create(a, dir.path()).unwrap();
        let key = dir.path().join("global-server-nomad-key.pem");
        assert!(dir.path().join("global-server-nomad.pem").exists());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        let mut a = cert_args(true, false, false);
        a.ca = Some(dir.path().join("nomad-agent-ca.pem"));
        a.key = Some(dir.path().join("nomad-agent-ca-key.pem"));
        let e = cert_create(a, dir.path()).unwrap_err().to_string();
        assert!(e.contains("global-server-nomad"), "{e}");
    }

    #[test]
    fn a_missing_ca_and_a_missing_role_are_sentences() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = cert_args(false, true, false);
        a.ca = Some(dir.path().join("nope.pem"));
        let e = cert_create(a, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("nope.pem") && e.contains("drover tls ca create"),
            "{e}"
        );
        let e = cert_create(cert_args(false, false, false), dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("-server, -client or -cli"), "{e}");
    }
}
