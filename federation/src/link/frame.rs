//! The frames inside one encrypted link message, and the length prefix of messages
//! on the wire.
//!
//! On the wire, after the handshake, each message is `varint(len) || ciphertext`
//! (Noise: plaintext + 16-byte tag, at most [`MAX_MESSAGE`] bytes). A plaintext is a
//! sequence of frames, each starting with a type byte:
//!
//! | type | frame | body |
//! |---|---|---|
//! | `0x00` | `Ping` | none: keeps the line (and the peer's short watchdog) alive |
//! | `0x01` | `Received` | varint: bytes received on this connection so far (flow control) |
//! | `0x02` | `Ack` | varint: sequence number of a transaction committed by the receiver |
//! | `0x03` | `Nack` | varint: sequence number of a transaction that was not applied (resend) |
//! | `0x08` | `Bye` | none: sessions mode, the sender has nothing more; a call ends when both said it with no data since ([`super::session`]) |
//! | `0x04 \| class` | `End` | none: the sender dropped its brotli context of `class`; the receiver drops its own, and the class's next compressed message starts a new stream |
//! | `0x80 \| lazy<<5 \| compact<<4 \| class<<2 \| compressed<<1 \| last` | `Data` | varint seq, varint len, bytes: one chunk of a message; `lazy`: its ack may wait for a message that goes anyway ([`super::session`]) |
//!
//! A data frame's body is JSON, brotli-compressed JSON (`compressed`: the bytes of
//! the class's stream up to a flush, [`super::compress`]) or the compact binary form
//! ([`super::compact`], `compact`); never both.

/// The largest ciphertext of one message (Noise's limit).
pub const MAX_MESSAGE: usize = 65_535;
/// What Noise adds to each message.
pub const TAG_LEN: usize = 16;
/// The largest plaintext of one message.
pub const MAX_PLAINTEXT: usize = MAX_MESSAGE - TAG_LEN;

/// Priority classes, most urgent first. Control frames (acks, flow reports, pings)
/// always go before data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    /// Presence pushes.
    Presence = 1,
    /// Short messages: consent, subscriptions, reminders.
    Short = 2,
    /// Bulk: feeds.
    Bulk = 3,
}

impl Class {
    /// Every data class, most urgent first.
    pub const ALL: [Class; 3] = [Class::Presence, Class::Short, Class::Bulk];

    /// Index into per-class arrays.
    pub fn index(self) -> usize {
        self as usize - 1
    }

    fn from_bits(bits: u8) -> Option<Class> {
        match bits {
            1 => Some(Class::Presence),
            2 => Some(Class::Short),
            3 => Some(Class::Bulk),
            _ => None,
        }
    }
}

/// How a message's body is written (after its transaction header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON as it is.
    Json,
    /// JSON compressed into the class's brotli stream, flushed at the message's end.
    Brotli,
    /// The compact binary form ([`super::compact`]).
    Compact,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Nothing but liveness.
    Ping,
    /// The sender has received this many bytes on this connection.
    Received(u64),
    /// The transaction with this sequence number was committed.
    Ack(u64),
    /// The transaction with this sequence number was not applied; send it again.
    Nack(u64),
    /// The sender's brotli context of this class is gone (the class was idle).
    End(Class),
    /// The sender has nothing more to send on this call (sessions).
    Bye,
    /// A chunk of message `seq` of `class`.
    Data {
        /// Its class.
        class: Class,
        /// Its message's sequence number.
        seq: u64,
        /// How the message's body is written.
        encoding: Encoding,
        /// Whether this is the message's last chunk.
        last: bool,
        /// Whether its ack, and the report of a message of nothing else, may wait for
        /// a message that goes anyway.
        lazy: bool,
        /// The chunk.
        bytes: &'a [u8],
    },
}

/// A frame or length prefix that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub &'static str);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Append `v` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The encoded length of `v` as a varint.
pub fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Read a varint at `*pos`, advancing it.
pub fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, FrameError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or(FrameError("truncated varint"))?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(FrameError("varint longer than 64 bits"))
}

impl Frame<'_> {
    /// Append this frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Ping => out.push(0x00),
            Frame::Received(n) => {
                out.push(0x01);
                put_varint(out, *n);
            }
            Frame::Ack(seq) => {
                out.push(0x02);
                put_varint(out, *seq);
            }
            Frame::Nack(seq) => {
                out.push(0x03);
                put_varint(out, *seq);
            }
            Frame::End(class) => out.push(0x04 | *class as u8),
            Frame::Bye => out.push(0x08),
            Frame::Data { class, seq, encoding, last, lazy, bytes } => {
                let enc = match encoding {
                    Encoding::Json => 0,
                    Encoding::Brotli => 0x02,
                    Encoding::Compact => 0x10,
                };
                out.push(0x80 | u8::from(*lazy) << 5 | enc | (*class as u8) << 2 | u8::from(*last));
                put_varint(out, *seq);
                put_varint(out, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
        }
    }

    /// The bytes a data frame adds around `len` bytes of chunk with `seq`.
    pub fn data_overhead(seq: u64, len: usize) -> usize {
        1 + varint_len(seq) + varint_len(len as u64)
    }
}

/// Every frame of one plaintext, in order.
pub fn decode_frames(plain: &[u8]) -> Result<Vec<Frame<'_>>, FrameError> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < plain.len() {
        let t = plain[pos];
        pos += 1;
        let frame = match t {
            0x00 => Frame::Ping,
            0x01 => Frame::Received(get_varint(plain, &mut pos)?),
            0x02 => Frame::Ack(get_varint(plain, &mut pos)?),
            0x03 => Frame::Nack(get_varint(plain, &mut pos)?),
            0x05..=0x07 => Frame::End(Class::from_bits(t & 0x03).ok_or(FrameError("end of class 0"))?),
            0x08 => Frame::Bye,
            t if t & 0x80 != 0 && t & 0x40 == 0 && t & 0x12 != 0x12 => {
                let class = Class::from_bits((t >> 2) & 0x03).ok_or(FrameError("data frame of class 0"))?;
                let seq = get_varint(plain, &mut pos)?;
                let len = get_varint(plain, &mut pos)?;
                let len = usize::try_from(len).map_err(|_| FrameError("chunk too long"))?;
                let end = pos.checked_add(len).filter(|e| *e <= plain.len()).ok_or(FrameError("truncated chunk"))?;
                let bytes = &plain[pos..end];
                pos = end;
                let encoding = match (t & 0x02 != 0, t & 0x10 != 0) {
                    (true, _) => Encoding::Brotli,
                    (false, true) => Encoding::Compact,
                    (false, false) => Encoding::Json,
                };
                Frame::Data { class, seq, encoding, last: t & 0x01 != 0, lazy: t & 0x20 != 0, bytes }
            }
            _ => return Err(FrameError("unknown frame type")),
        };
        frames.push(frame);
    }
    Ok(frames)
}

/// Append the wire form of one ciphertext: its length as a varint, then itself.
pub fn put_message(out: &mut Vec<u8>, ciphertext: &[u8]) {
    put_varint(out, ciphertext.len() as u64);
    out.extend_from_slice(ciphertext);
}

/// Read one message's length prefix from `reader`: at most 3 bytes, at most
/// [`MAX_MESSAGE`], at least a tag.
pub async fn read_len<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut v: usize = 0;
    for shift in [0, 7, 14] {
        let b = reader.read_u8().await?;
        v |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            if !(TAG_LEN..=MAX_MESSAGE).contains(&v) {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bad message length"));
            }
            return Ok(v);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message length prefix too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            Frame::Ping,
            Frame::Received(300),
            Frame::Ack(0),
            Frame::Nack(u64::MAX),
            Frame::End(Class::Presence),
            Frame::End(Class::Bulk),
            Frame::Bye,
            Frame::Data {
                class: Class::Bulk,
                seq: 7,
                encoding: Encoding::Brotli,
                last: false,
                lazy: false,
                bytes: b"abc",
            },
            Frame::Data {
                class: Class::Presence,
                seq: 128,
                encoding: Encoding::Json,
                last: true,
                lazy: false,
                bytes: b"",
            },
            Frame::Data {
                class: Class::Short,
                seq: 1,
                encoding: Encoding::Compact,
                last: true,
                lazy: false,
                bytes: b"x",
            },
            Frame::Data {
                class: Class::Presence,
                seq: 2,
                encoding: Encoding::Compact,
                last: true,
                lazy: true,
                bytes: b"y",
            },
        ];
        let mut out = Vec::new();
        for f in &frames {
            f.encode(&mut out);
        }
        assert_eq!(decode_frames(&out).expect("decodes"), frames);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[0x04][..],
            &[0x0a],
            &[0x01, 0x80],
            &[0x80, 1, 5, 1],
            &[0x81, 0, 2, 0],
            &[0xff],
            &[0xd1, 0, 0],
            &[0x97, 0, 0],
            &[0x09],
        ] {
            assert!(decode_frames(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn varint_lengths_match_encodings() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut pos = 0;
            assert_eq!(get_varint(&out, &mut pos).expect("reads"), v);
        }
    }
}
