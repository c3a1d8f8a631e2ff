//! A self-signed CA and agent certificates with Nomad's names (`drover tls ca create`,
//! `drover tls cert create`). ECDSA P-256 keys, as Nomad makes them.

use crate::{client_name, err, server_name, TlsError};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
    Cli,
}

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }
}

/// A certificate to make: its role, region and domain, and names beyond Nomad's.
#[derive(Debug, Clone)]
pub struct CertRequest {
    pub role: Role,
    pub region: String,
    pub domain: String,
    pub additional_dns: Vec<String>,
    pub additional_ips: Vec<IpAddr>,
    pub days: u32,
}

impl CertRequest {
    /// Nomad's names: `<role>.<region>.<domain>` and `localhost`, plus `127.0.0.1` for
    /// servers and clients, then the additional ones.
    pub fn names(&self) -> (Vec<String>, Vec<IpAddr>) {
        let first = match (self.role, self.domain.as_str()) {
            (Role::Server, "nomad") => server_name(&self.region),
            (Role::Client, "nomad") => client_name(&self.region),
            (role, domain) => format!("{}.{}.{domain}", role.word(), self.region),
        };
        let mut dns = vec![first, "localhost".to_string()];
        for d in &self.additional_dns {
            if !dns.contains(d) {
                dns.push(d.clone());
            }
        }
        let mut ips: Vec<IpAddr> = Vec::new();
        if self.role != Role::Cli {
            ips.push(IpAddr::from([127, 0, 0, 1]));
        }
        for ip in &self.additional_ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
        (dns, ips)
    }

    /// Nomad's file names: `<region>-<role>-<domain>.pem` and `...-key.pem`.
    pub fn file_names(&self) -> (String, String) {
        let stem = format!("{}-{}-{}", self.region, self.role.word(), self.domain);
        (format!("{stem}.pem"), format!("{stem}-key.pem"))
    }
}

fn serial() -> SerialNumber {
    // Unique enough for a private CA: the clock's nanoseconds and the process id.
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as u128;
    let mut bytes = ((nanos << 32) ^ std::process::id() as u128).to_be_bytes();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // A minute of slack for clocks a little behind.
    params.not_before = now - Duration::minutes(1);
    params.not_after = now + Duration::days(i64::from(days.max(1)));
}

/// A new self-signed CA (5 years by default in Nomad; `days` here).
pub fn ca(common_name: &str, days: u32) -> Result<Pem, TlsError> {
    let key = KeyPair::generate().map_err(|e| err(format!("cannot make a key: {e}")))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Drover");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial());
    validity(&mut params, days);
    let cert = params
        .self_signed(&key)
        .map_err(|e| err(format!("cannot make the CA certificate: {e}")))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `req`, signed by the CA given as PEM (`ca_file` and `key_file` name
/// them in errors).
pub fn cert(
    req: &CertRequest,
    ca_pem: &str,
    ca_key_pem: &str,
    ca_file: &str,
    key_file: &str,
) -> Result<Pem, TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| err(format!("the CA key file {key_file} cannot be used: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
        .map_err(|e| err(format!("the CA file {ca_file} cannot be used: {e}")))?;
    let key = KeyPair::generate().map_err(|e| err(format!("cannot make a key: {e}")))?;
    let (dns, ips) = req.names();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, dns[0].clone());
    for d in &dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| err(format!("{d:?} is not a valid DNS name")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match req.role {
        // Servers and client agents both serve (HTTP, RPC) and dial.
        Role::Server | Role::Client => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Role::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    validity(&mut params, req.days);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| err(format!("cannot sign the certificate: {e}")))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
