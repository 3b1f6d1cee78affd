//! A stored transaction as a link message: its txnId (reused on every retry, so the
//! receiver's exchange acknowledges a repeat without applying it twice) and its EDUs.
//! The origin is the authenticated peer, and the rest of the Matrix envelope
//! (`origin_server_ts`, `pdus`) is not sent.
//!
//! A message is `header || body`. The header is kept out of the compressor (it is
//! data, not text): for a txnId of Tidings' form `<ms>.<8 hex digits>`, `0x00`, then
//! the differences from the previous such txnId of the class on the connection as
//! zigzag varints: the ms, then the 8 hex digits as a wrapping 32-bit number (core
//! counts them up from a random start, so a txnId a minute after the last costs 4 or 5
//! bytes); `0x01, varint len, bytes` for any other. The body is the EDUs as a JSON array of `[edu_type, content]` pairs,
//! compressed in the class's context.

use serde_json::Value;
use tidings_core::exchange::IncomingEdu;

use super::frame::{FrameError, get_varint, put_varint};

/// The last compact txnId of a class on a connection, which the next one's header
/// is written against (both ends keep one per direction and class).
#[derive(Debug, Default, Clone, Copy)]
pub struct Previous {
    ms: u64,
    suffix: u32,
}

/// The header of `txn_id`, given the previous txnId of its class (updated).
pub fn encode_header(txn_id: &str, prev: &mut Previous, out: &mut Vec<u8>) {
    if let Some((ms, suffix)) = compact_id(txn_id) {
        out.push(0x00);
        put_varint(out, zigzag(ms as i64 - prev.ms as i64));
        put_varint(out, zigzag(i64::from(suffix.wrapping_sub(prev.suffix) as i32)));
        *prev = Previous { ms, suffix };
    } else {
        out.push(0x01);
        put_varint(out, txn_id.len() as u64);
        out.extend_from_slice(txn_id.as_bytes());
    }
}

/// Read a header at the start of `buf`: the txnId and the header's length.
pub fn decode_header(buf: &[u8], prev: &mut Previous) -> Result<(String, usize), FrameError> {
    let mut pos = 1;
    match buf.first() {
        Some(0x00) => {
            let delta = unzigzag(get_varint(buf, &mut pos)?);
            let ms = (prev.ms as i64)
                .checked_add(delta)
                .filter(|m| (0..1 << 53).contains(m))
                .ok_or(FrameError("bad txn time"))?;
            let step = i32::try_from(unzigzag(get_varint(buf, &mut pos)?)).map_err(|_| FrameError("bad txn suffix"))?;
            let suffix = prev.suffix.wrapping_add(step as u32);
            *prev = Previous { ms: ms as u64, suffix };
            Ok((format!("{ms}.{suffix:08x}"), pos))
        }
        Some(0x01) => {
            let len = get_varint(buf, &mut pos)? as usize;
            let id = buf.get(pos..pos.saturating_add(len)).ok_or(FrameError("truncated txn id"))?;
            let id = std::str::from_utf8(id).map_err(|_| FrameError("txn id is not UTF-8"))?;
            if id.is_empty() || id.len() > 255 {
                return Err(FrameError("bad txn id length"));
            }
            Ok((id.to_owned(), pos + len))
        }
        _ => Err(FrameError("bad txn header")),
    }
}

/// The EDUs of a stored body as the compact JSON array.
pub fn encode_body(body: &str) -> Result<Vec<u8>, String> {
    serde_json::to_vec(&edus_value(body)?).map_err(|e| format!("cannot encode: {e}"))
}

/// The EDUs of a stored body as a JSON array of `[edu_type, content]` pairs.
pub fn edus_value(body: &str) -> Result<Value, String> {
    let body: Value = serde_json::from_str(body).map_err(|e| format!("stored body unreadable: {e}"))?;
    let edus: Vec<Value> = body
        .get("edus")
        .and_then(Value::as_array)
        .map(|edus| {
            edus.iter()
                .map(|e| {
                    Value::Array(vec![
                        e.get("edu_type").cloned().unwrap_or(Value::Null),
                        e.get("content").cloned().unwrap_or(Value::Null),
                    ])
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Value::Array(edus))
}

/// The EDUs of a received body already parsed (the compact form decodes to this).
pub fn decode_value(body: Value) -> Result<Vec<IncomingEdu>, String> {
    let pairs: Vec<(String, Value)> = serde_json::from_value(body).map_err(|e| format!("bad EDUs: {e}"))?;
    Ok(pairs.into_iter().map(|(edu_type, content)| IncomingEdu { edu_type, content }).collect())
}

/// The EDUs of a received body.
pub fn decode_body(body: &[u8]) -> Result<Vec<IncomingEdu>, String> {
    let pairs: Vec<(String, Value)> = serde_json::from_slice(body).map_err(|e| format!("bad EDUs: {e}"))?;
    Ok(pairs.into_iter().map(|(edu_type, content)| IncomingEdu { edu_type, content }).collect())
}

fn compact_id(txn_id: &str) -> Option<(u64, u32)> {
    let (ms, suffix) = txn_id.split_once('.')?;
    if suffix.len() != 8 || !suffix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let ms: u64 = ms.parse().ok().filter(|m: &u64| *m < (1 << 53) && ms == m.to_string())?;
    Some((ms, u32::from_str_radix(suffix, 16).ok()?))
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_ids_round_trip_compactly_and_literally() {
        let (mut tx, mut rx) = (Previous::default(), Previous::default());
        for id in [
            "1764590000123.0a1b2c3d",
            "1764590010456.ffffffff",
            "odd-id",
            "1764590000000.00000001",
            "1764590000000.80000001",
            "1764590000001.00000000",
        ] {
            let mut out = Vec::new();
            encode_header(id, &mut tx, &mut out);
            let (back, len) = decode_header(&out, &mut rx).expect("decodes");
            assert_eq!((back.as_str(), len), (id, out.len()));
        }
        let mut out = Vec::new();
        let mut prev = Previous { ms: 1_764_590_000_000, suffix: 0x1234_5670 };
        encode_header("1764590010000.12345678", &mut prev, &mut out);
        assert_eq!(out.len(), 1 + 3 + 1, "ten seconds and 8 txnIds later: 3 + 1 bytes of differences");
        for bad in [&[0x00, 0x01, 0x00][..], &[0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x7f], &[0x00, 0x02]] {
            assert!(decode_header(bad, &mut Previous::default()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_round_trip() {
        let stored =
            r#"{"origin":"a","origin_server_ts":1,"pdus":[],"edus":[{"edu_type":"m.presence","content":{"push":[]}}]}"#;
        let edus = decode_body(&encode_body(stored).expect("encodes")).expect("decodes");
        assert_eq!(edus.len(), 1);
        assert_eq!(edus[0].edu_type, "m.presence");
    }
}
