//! Checksummed record framing: every value the store keeps in sled (log entries, the vote,
//! the committed index, the purge point, snapshots and their meta) is sealed here and
//! checked on every read.

use super::super::TypeConfig;
use openraft::Entry;
use serde::Deserialize;

/// A record's first byte: the framing version.
const RECORD_V1: u8 = 1;
const RECORD_HEADER: usize = 5;

/// Stored data that fails a check: what is wrong, as a sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Damage(pub String);

/// Frame a record: version byte, CRC-32 (little endian) of the payload, the payload.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.push(RECORD_V1);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Check a record's frame and checksum; `what` names it in the error.
pub fn unseal<'a>(what: &str, bytes: &'a [u8]) -> Result<&'a [u8], Damage> {
    if bytes.len() < RECORD_HEADER || bytes[0] != RECORD_V1 {
        return Err(Damage(format!(
            "record {what} has no valid checksum header ({} bytes)",
            bytes.len()
        )));
    }
    let want = u32::from_le_bytes(bytes[1..RECORD_HEADER].try_into().expect("4 bytes"));
    let payload = &bytes[RECORD_HEADER..];
    let got = crc32fast::hash(payload);
    if want != got {
        return Err(Damage(format!(
            "record {what} fails its checksum (stored {want:08x}, computed {got:08x})"
        )));
    }
    Ok(payload)
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, Damage> {
    serde_json::from_slice(unseal(what, bytes)?).map_err(|e| {
        Damage(format!(
            "record {what} passes its checksum but does not parse: {e}"
        ))
    })
}

pub(super) fn log_key(k: &[u8]) -> Result<u64, Damage> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| Damage(format!("a log key is {} bytes long, not 8", k.len())))
}

pub(super) fn decode_entry(k: &[u8], v: &[u8]) -> Result<Entry<TypeConfig>, Damage> {
    let idx = log_key(k)?;
    let e: Entry<TypeConfig> = decode(&format!("log entry {idx}"), v)?;
    if e.log_id.index != idx {
        return Err(Damage(format!(
            "log entry stored under index {idx} says it is entry {}",
            e.log_id.index
        )));
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_fails_the_record_checksum() {
        let sealed = seal(b"{\"a\":1}");
        assert_eq!(unseal("x", &sealed).unwrap(), b"{\"a\":1}");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert!(
                unseal("x", &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(unseal("x", &sealed[..3]).is_err());
        // Records from before checksums (bare JSON) are refused too.
        assert!(unseal("x", b"{\"a\":1}").is_err());
    }
}
