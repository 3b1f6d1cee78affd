//! Streaming brotli, one context per direction and class for the life of a
//! connection: each message is fed in and flushed at its end (the protocol's batch
//! boundary), so structure repeated from earlier messages costs almost nothing.
//!
//! Memory and the streaming ratio pick the parameters: quality 5 to 9 makes brotli
//! allocate about 34 MB per encoder; quality 3 or 4 with a 12 to 16-bit window stays
//! near 0.3 to 1.3 MB. Quality 10 and 11 would be smaller per message, but in this
//! crate they do not match across flushes: measured on one 98-byte presence EDU sent
//! twice, the second copy costs 83 bytes at quality 11 and 11 bytes at quality 3 to 9
//! (21 at quality 2). So every class uses quality 4: a 12-bit (4 KiB) window for
//! presence and short messages, whose repeats are recent, and a 16-bit window for bulk.

use std::io::Write;

use super::frame::Class;

/// Encoder parameters of a class: (quality, lgwin).
fn params(class: Class) -> (u32, u32) {
    match class {
        Class::Presence | Class::Short => (4, 12),
        Class::Bulk => (4, 16),
    }
}

/// The sending half of one class's context.
pub struct Encoder {
    w: brotli::CompressorWriter<Vec<u8>>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl Encoder {
    /// A fresh context for `class`.
    pub fn new(class: Class) -> Self {
        let (q, lgwin) = params(class);
        Self { w: brotli::CompressorWriter::new(Vec::new(), 1024, q, lgwin) }
    }

    /// Compress `data` and flush, so the far side can decode all of it now.
    pub fn compress(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.w.write_all(data)?;
        self.w.flush()?;
        Ok(std::mem::take(self.w.get_mut()))
    }
}

/// The receiving half of one class's context.
pub struct Decoder {
    w: brotli::DecompressorWriter<Limited>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

/// A `Vec` that refuses to grow past a bound, so a small compressed message cannot
/// expand into gigabytes.
struct Limited {
    out: Vec<u8>,
    max: usize,
}

impl Write for Limited {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.max {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "decompressed message too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Decoder {
    /// A fresh context; no message may decompress to more than `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { w: brotli::DecompressorWriter::new(Limited { out: Vec::new(), max }, 1024) }
    }

    /// Decompress one flushed piece; what it decodes to so far.
    pub fn decompress(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.w.write_all(data)?;
        self.w.flush()?;
        Ok(std::mem::take(&mut self.w.get_mut().out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_message_costs_a_few_bytes_once_the_context_has_seen_it() {
        let mut enc = Encoder::new(Class::Presence);
        let mut dec = Decoder::new(1 << 20);
        let msg =
            br#"[["m.presence",{"push":[{"user_id":"@alice:alpha.test","presence":"online","last_active_ago":0}]}]]"#;
        let first = enc.compress(msg).expect("compress");
        let second = enc.compress(msg).expect("compress");
        assert!(second.len() < 12, "second copy took {} bytes", second.len());
        assert!(second.len() < first.len());
        assert_eq!(dec.decompress(&first).expect("first"), msg);
        assert_eq!(dec.decompress(&second).expect("second"), msg);
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        let mut dec = Decoder::new(1 << 20);
        assert!(dec.decompress(b"\xff\xff\xff\xff garbage").is_err());
        let mut enc = Encoder::new(Class::Bulk);
        let bomb = enc.compress(&vec![0u8; 2 << 20]).expect("compress");
        assert!(Decoder::new(1 << 20).decompress(&bomb).is_err());
    }
}
