use super::generate::{self, CertRequest, Role};
use super::*;
use std::path::PathBuf;

struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let c = Certs { dir };
        c.make_ca("ca");
        for role in [Role::Server, Role::Client, Role::Cli] {
            c.make_cert("ca", role, "global");
        }
        c
    }

    fn make_ca(&self, prefix: &str) {
        let ca = generate::ca("Test CA", 30).unwrap();
        std::fs::write(self.path(&format!("{prefix}.pem")), ca.cert).unwrap();
        std::fs::write(self.path(&format!("{prefix}-key.pem")), ca.key).unwrap();
    }

    /// Writes `<ca>-<region>-<role>.pem` and its key.
    fn make_cert(&self, ca: &str, role: Role, region: &str) {
        let req = CertRequest {
            role,
            region: region.into(),
            domain: "nomad".into(),
            additional_dns: vec![],
            additional_ips: vec![],
            days: 30,
        };
        let ca_pem = std::fs::read_to_string(self.path(&format!("{ca}.pem"))).unwrap();
        let ca_key = std::fs::read_to_string(self.path(&format!("{ca}-key.pem"))).unwrap();
        let pem = generate::cert(&req, &ca_pem, &ca_key, "ca.pem", "ca-key.pem").unwrap();
        let stem = format!("{ca}-{region}-{}", role.word());
        std::fs::write(self.path(&format!("{stem}.pem")), pem.cert).unwrap();
        std::fs::write(self.path(&format!("{stem}-key.pem")), pem.key).unwrap();
    }

    fn options(&self, ca: &str, stem: &str) -> TlsOptions {
        TlsOptions {
            http: true,
            rpc: true,
            ca_file: Some(self.path(&format!("{ca}.pem"))),
            cert_file: Some(self.path(&format!("{stem}.pem"))),
            key_file: Some(self.path(&format!("{stem}-key.pem"))),
            verify_server_hostname: true,
            verify_https_client: true,
            region: String::new(),
        }
    }

    fn agent(&self, ca: &str, stem: &str) -> AgentTls {
        AgentTls::load(&self.options(ca, stem)).unwrap().unwrap()
    }
}

/// Runs a TLS handshake in memory; `Err` carries the first side's error.
fn handshake(
    client: rustls::ClientConfig,
    server: Arc<rustls::ServerConfig>,
    dialled: &str,
) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    let name = ServerName::try_from(dialled.to_string()).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = rustls::ServerConnection::new(server).unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets()
            .map_err(|e| format!("server: {e}"))?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()
            .map_err(|e| format!("client: {e}"))?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // TLS 1.3: the server learns of a refused certificate from the client's
            // last flight; let it read that too.
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            return Ok(s.peer_certificates().map(|c| c.to_vec()));
        }
    }
    Err("the handshake did not finish".into())
}

#[test]
fn generated_certificates_carry_nomads_names() {
    let c = Certs::new();
    let server = load_certs(&c.path("ca-global-server.pem"), "certificate").unwrap();
    let client = load_certs(&c.path("ca-global-client.pem"), "certificate").unwrap();
    let cli = load_certs(&c.path("ca-global-cli.pem"), "certificate").unwrap();
    assert_eq!(
        peer_cert(&server[0], "global"),
        PeerCert {
            server: true,
            client: false
        }
    );
    assert_eq!(
        peer_cert(&client[0], "global"),
        PeerCert {
            server: false,
            client: true
        }
    );
    assert_eq!(peer_cert(&cli[0], "global"), PeerCert::default());
    assert!(valid_for(&server[0], "localhost"));
    assert!(valid_for(&cli[0], "cli.global.nomad"));
    assert!(
        !valid_for(&server[0], "server.europe.nomad"),
        "another region"
    );
}

#[test]
fn nomads_file_names_and_names_per_role() {
    let mut req = CertRequest {
        role: Role::Server,
        region: "global".into(),
        domain: "nomad".into(),
        additional_dns: vec!["nomad.example.com".into()],
        additional_ips: vec!["10.0.0.5".parse().unwrap()],
        days: 365,
    };
    assert_eq!(
        req.file_names(),
        (
            "global-server-nomad.pem".to_string(),
            "global-server-nomad-key.pem".to_string()
        )
    );
    let (dns, ips) = req.names();
    assert_eq!(
        dns,
        ["server.global.nomad", "localhost", "nomad.example.com"]
    );
    assert_eq!(
        ips,
        [
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            "10.0.0.5".parse().unwrap()
        ]
    );
    req.role = Role::Cli;
    req.additional_dns.clear();
    req.additional_ips.clear();
    assert_eq!(
        req.names(),
        (vec!["cli.global.nomad".into(), "localhost".into()], vec![])
    );
}

use std::net::IpAddr;

#[test]
fn a_missing_file_is_named() {
    let c = Certs::new();
    let mut o = c.options("ca", "ca-global-server");
    o.cert_file = Some(c.path("nope.pem"));
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(e.contains(&c.path("nope.pem").display().to_string()), "{e}");
    assert!(e.starts_with("cannot read the certificate file"), "{e}");
    let mut o = c.options("ca", "ca-global-server");
    o.ca_file = Some(c.path("missing-ca.pem"));
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(
        e.contains("CA certificate file") && e.contains("missing-ca.pem"),
        "{e}"
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_names_both_files() {
    let c = Certs::new();
    let mut o = c.options("ca", "ca-global-server");
    o.key_file = Some(c.path("ca-global-client-key.pem"));
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    assert!(
        e.contains("ca-global-client-key.pem") && e.contains("ca-global-server.pem"),
        "{e}"
    );
}

#[test]
fn garbage_and_empty_files_are_sentences_naming_the_file() {
    let c = Certs::new();
    std::fs::write(c.path("empty.pem"), "").unwrap();
    let mut o = c.options("ca", "ca-global-server");
    o.ca_file = Some(c.path("empty.pem"));
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(
        e.contains("empty.pem") && e.contains("no PEM certificate"),
        "{e}"
    );
    let mut o = c.options("ca", "ca-global-server");
    o.key_file = Some(c.path("ca-global-server.pem"));
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(e.contains("no PEM private key"), "{e}");
}

#[test]
fn files_alone_turn_nothing_on_and_a_missing_setting_is_named() {
    let c = Certs::new();
    let mut o = c.options("ca", "ca-global-server");
    o.http = false;
    o.rpc = false;
    assert!(AgentTls::load(&o).unwrap().is_none());
    o.rpc = true;
    o.key_file = None;
    let e = AgentTls::load(&o).unwrap_err().to_string();
    assert!(e.contains("key_file is required"), "{e}");
}

#[test]
fn servers_are_checked_by_name_whatever_address_was_dialled() {
    let c = Certs::new();
    let server = c.agent("ca", "ca-global-server");
    let client = c.agent("ca", "ca-global-client");
    // Dialled by an IP the certificate does not name: the server name is what counts.
    let peers = handshake(
        client.dialer().unwrap(),
        server.rpc_acceptor().unwrap(),
        "10.1.2.3",
    )
    .unwrap()
    .expect("the client presented its certificate");
    assert_eq!(
        server.peer_cert(&peers[0]),
        PeerCert {
            server: false,
            client: true
        }
    );
    // A client agent's certificate is not a server's.
    let other_client = c.agent("ca", "ca-global-client");
    let e = handshake(
        server.dialer().unwrap(),
        other_client.rpc_acceptor().unwrap(),
        "10.1.2.3",
    )
    .unwrap_err();
    assert!(e.contains("client:"), "{e}");
}

#[test]
fn without_verify_server_hostname_any_certificate_of_the_ca_is_accepted() {
    let c = Certs::new();
    let mut o = c.options("ca", "ca-global-server");
    o.verify_server_hostname = false;
    let lax = AgentTls::load(&o).unwrap().unwrap();
    let client_as_server = c.agent("ca", "ca-global-client");
    handshake(
        lax.dialer().unwrap(),
        client_as_server.rpc_acceptor().unwrap(),
        "10.1.2.3",
    )
    .unwrap();
}

#[test]
fn another_cas_certificates_are_refused_both_ways() {
    let c = Certs::new();
    c.make_ca("other");
    c.make_cert("other", Role::Server, "global");
    let ours = c.agent("ca", "ca-global-server");
    let theirs = c.agent("other", "other-global-server");
    let e = handshake(
        theirs.dialer().unwrap(),
        ours.rpc_acceptor().unwrap(),
        "127.0.0.1",
    )
    .unwrap_err();
    assert!(
        e.contains("client:"),
        "our server is refused by their dialler: {e}"
    );
    // Their CA is trusted by neither; a dialler trusting ours meets a stranger server.
    let e = handshake(
        ours.dialer().unwrap(),
        theirs.rpc_acceptor().unwrap(),
        "127.0.0.1",
    )
    .unwrap_err();
    assert!(e.contains("client:"), "{e}");
}

#[test]
fn the_rpc_listener_demands_a_client_certificate_and_http_only_with_verify_https_client() {
    let c = Certs::new();
    let server = c.agent("ca", "ca-global-server");
    let anonymous = cli_dialer(Some(&c.path("ca.pem")), None, None).unwrap();
    let e = handshake(
        anonymous.clone(),
        server.rpc_acceptor().unwrap(),
        "127.0.0.1",
    )
    .unwrap_err();
    assert!(e.contains("server:"), "{e}");
    let e = handshake(
        anonymous.clone(),
        server.http_acceptor().unwrap(),
        "127.0.0.1",
    )
    .unwrap_err();
    assert!(e.contains("server:"), "verify_https_client is on: {e}");
    let mut o = c.options("ca", "ca-global-server");
    o.verify_https_client = false;
    let open = AgentTls::load(&o).unwrap().unwrap();
    assert_eq!(
        handshake(anonymous, open.http_acceptor().unwrap(), "127.0.0.1").unwrap(),
        None
    );
    // The CLI checks the address's host name, which Nomad's certificates carry.
    let cli = cli_dialer(
        Some(&c.path("ca.pem")),
        Some(&c.path("ca-global-cli.pem")),
        Some(&c.path("ca-global-cli-key.pem")),
    )
    .unwrap();
    handshake(cli.clone(), server.http_acceptor().unwrap(), "localhost").unwrap();
    let e = handshake(cli, server.http_acceptor().unwrap(), "10.9.9.9").unwrap_err();
    assert!(e.contains("client:"), "{e}");
}

#[test]
fn cli_settings_without_their_pair_are_sentences() {
    let e = cli_dialer(None, Some(Path::new("/x/cert.pem")), None).unwrap_err();
    assert!(e.to_string().contains("-client-key"), "{e}");
    let e = cli_dialer(None, None, Some(Path::new("/x/key.pem"))).unwrap_err();
    assert!(e.to_string().contains("-client-cert"), "{e}");
}

#[test]
fn openssl_made_certificates_load() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        eprintln!("openssl is not installed; skipping");
        return;
    };
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let run = |args: &[&str]| {
        let o = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "ca.pem",
        "-days",
        "30",
        "-subj",
        "/CN=openssl CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server-key.pem",
        "-out",
        "server.csr",
        "-subj",
        "/CN=server.global.nomad",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "subjectAltName=DNS:server.global.nomad,DNS:localhost,IP:127.0.0.1\n\
         extendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca-key.pem",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
    ]);
    let opts = TlsOptions {
        http: true,
        rpc: true,
        ca_file: Some(p("ca.pem")),
        cert_file: Some(p("server.pem")),
        key_file: Some(p("server-key.pem")),
        verify_server_hostname: true,
        verify_https_client: true,
        region: "global".into(),
    };
    let server = AgentTls::load(&opts).unwrap().unwrap();
    handshake(
        server.dialer().unwrap(),
        server.rpc_acceptor().unwrap(),
        "10.0.0.1",
    )
    .unwrap();
    // `drover tls cert create -ca` signs with an openssl-made CA too.
    let req = CertRequest {
        role: Role::Client,
        region: "global".into(),
        domain: "nomad".into(),
        additional_dns: vec![],
        additional_ips: vec![],
        days: 30,
    };
    let pem = generate::cert(
        &req,
        &std::fs::read_to_string(p("ca.pem")).unwrap(),
        &std::fs::read_to_string(p("ca-key.pem")).unwrap(),
        "ca.pem",
        "ca-key.pem",
    )
    .unwrap();
    std::fs::write(p("client.pem"), pem.cert).unwrap();
    std::fs::write(p("client-key.pem"), pem.key).unwrap();
    let mut o = opts.clone();
    o.cert_file = Some(p("client.pem"));
    o.key_file = Some(p("client-key.pem"));
    let client = AgentTls::load(&o).unwrap().unwrap();
    let peers = handshake(
        client.dialer().unwrap(),
        server.rpc_acceptor().unwrap(),
        "10.0.0.1",
    )
    .unwrap()
    .unwrap();
    assert!(server.peer_cert(&peers[0]).client);
}
