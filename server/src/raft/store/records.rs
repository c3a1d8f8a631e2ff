//! Checksummed record framing: every value the store keeps in sled (log entries, the vote,
//! the committed index, the purge point, snapshots and their meta) is sealed here and
//! checked on every read. Log entries of some size are also compressed (zstd, level 1):
//! sled keeps the log it has written or read in memory (its cache bound is not enforced
//! for a few large pages), and at C100K the JSON log was most of a server's memory apart
//! from the state.

use super::super::TypeConfig;
use openraft::Entry;
use serde::Deserialize;
use std::borrow::Cow;

/// A record's first byte: the framing version. V1: the payload as it is.
const RECORD_V1: u8 = 1;
/// V2: the payload compressed with zstd (the checksum covers the compressed bytes, so
/// damage is found before anything is decompressed).
const RECORD_V2_ZSTD: u8 = 2;
const RECORD_HEADER: usize = 5;
/// Payloads smaller than this are stored as they are (V1).
const COMPRESS_FROM: usize = 512;
/// The largest payload a compressed record may expand to: a log entry is bounded by the
/// RPC body cap long before this.
const MAX_EXPANDED: u64 = 1 << 30;

/// Stored data that fails a check: what is wrong, as a sentence naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Damage(pub String);

/// Frame a record: version byte, CRC-32 (little endian) of the payload, the payload.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    frame(RECORD_V1, payload)
}

fn frame(version: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.push(version);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// [`seal`], compressing a payload of some size first (a log entry).
pub fn seal_compressed(payload: &[u8]) -> Vec<u8> {
    if payload.len() < COMPRESS_FROM {
        return seal(payload);
    }
    match zstd::bulk::compress(payload, 1) {
        Ok(z) if z.len() < payload.len() => frame(RECORD_V2_ZSTD, &z),
        _ => seal(payload),
    }
}

/// Check a record's frame and checksum; `what` names it in the error. The payload,
/// decompressed when it was stored compressed.
pub fn unseal<'a>(what: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, Damage> {
    if bytes.len() < RECORD_HEADER || !matches!(bytes[0], RECORD_V1 | RECORD_V2_ZSTD) {
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
    if bytes[0] == RECORD_V1 {
        return Ok(Cow::Borrowed(payload));
    }
    let bad = |m: String| Damage(format!("record {what} passes its checksum but {m}"));
    let size = zstd::zstd_safe::get_frame_content_size(payload)
        .ok()
        .flatten()
        .ok_or_else(|| bad("its compressed frame does not give its size".into()))?;
    if size > MAX_EXPANDED {
        return Err(bad(format!("would expand to {size} bytes")));
    }
    zstd::bulk::decompress(payload, size as usize)
        .map(Cow::Owned)
        .map_err(|e| bad(format!("does not decompress: {e}")))
}

/// The size of a record's payload as it was before sealing (a compressed one's expanded
/// size, from its frame header, without decompressing); 0 for a record too short to be
/// one, which reading it will refuse anyway.
pub(super) fn payload_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(&RECORD_V2_ZSTD) if bytes.len() >= RECORD_HEADER => {
            zstd::zstd_safe::get_frame_content_size(&bytes[RECORD_HEADER..])
                .ok()
                .flatten()
                .map_or(0, |n| n.min(MAX_EXPANDED) as usize)
        }
        _ => bytes.len().saturating_sub(RECORD_HEADER),
    }
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, Damage> {
    serde_json::from_slice(&unseal(what, bytes)?).map_err(|e| {
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
    fn a_records_payload_length_is_its_size_before_sealing_compressed_or_not() {
        let small = b"{\"a\":1}".to_vec();
        let big = vec![b'x'; 100_000];
        assert_eq!(payload_len(&seal(&small)), small.len());
        let z = seal_compressed(&big);
        assert!(z.len() < 1_000, "the test payload should compress");
        assert_eq!(payload_len(&z), big.len());
        assert_eq!(payload_len(&[]), 0);
        assert_eq!(payload_len(&[RECORD_V2_ZSTD, 0]), 0);
    }

    fn every_flipped_byte_is_refused(sealed: &[u8]) {
        for i in 0..sealed.len() {
            let mut bad = sealed.to_vec();
            bad[i] ^= 0x40;
            assert!(
                unseal("x", &bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_flipped_byte_fails_the_record_checksum() {
        let sealed = seal(b"{\"a\":1}");
        assert_eq!(&*unseal("x", &sealed).unwrap(), b"{\"a\":1}");
        every_flipped_byte_is_refused(&sealed);
        assert!(unseal("x", &sealed[..3]).is_err());
        // Records from before checksums (bare JSON) are refused too.
        assert!(unseal("x", b"{\"a\":1}").is_err());
    }

    #[test]
    fn a_large_record_is_stored_compressed_and_any_flipped_byte_is_refused() {
        let payload =
            serde_json::to_vec(&vec!["an allocation, much like the next one"; 200]).unwrap();
        let sealed = seal_compressed(&payload);
        assert_eq!(sealed[0], RECORD_V2_ZSTD);
        assert!(sealed.len() * 10 < payload.len(), "{} bytes", sealed.len());
        assert_eq!(&*unseal("x", &sealed).unwrap(), &payload[..]);
        every_flipped_byte_is_refused(&sealed);
        // A small one stays as it is.
        assert_eq!(seal_compressed(b"{}")[0], RECORD_V1);
        // A frame that passes its checksum but claims a huge size is refused, not
        // allocated.
        let mut z = zstd::bulk::compress(&payload, 1).unwrap();
        z.truncate(z.len() / 2);
        let torn = frame(RECORD_V2_ZSTD, &z);
        assert!(unseal("x", &torn).unwrap_err().0.contains("decompress"));
    }
}
