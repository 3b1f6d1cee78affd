//! Brotli, one finished stream per message (fed piece by piece as the message
//! leaves, so bulk is compressed only as fast as the line takes it).
//!
//! One context per connection and class, flushed at each message's end, was the
//! plan (repeated structure would cost almost nothing: a 98-byte presence EDU sent a
//! second time compresses to 11 bytes). But the `brotli` crate's decoder holds back
//! the tail of what it decoded at a flush once messages grow past a few KiB (measured:
//! 20,000 small JSON items sent in flushed 1 KiB pieces decode to 458,752 of 506,690
//! bytes at a 16-bit window, also within the first 32 KiB), so a message would not
//! come out whole. Until that is solved, each message is its own finished stream,
//! which decodes whole, and a message that does not get smaller is sent raw.
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

/// The window of every context: 64 KiB.
const LGWIN: u32 = 16;

/// Encoder parameters of a class: (quality, lgwin).
fn params(class: Class) -> (u32, u32) {
    match class {
        Class::Presence | Class::Short | Class::Bulk => (4, LGWIN),
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

    /// End the stream: what is left of it, finished, so a decoder gives out all of it.
    pub fn finish(self) -> Vec<u8> {
        self.w.into_inner()
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

    /// Decompress a whole finished stream (a fresh message) into at most `max` bytes.
    pub fn decompress_finished(data: &[u8], max: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Limited { out: Vec::new(), max };
        brotli::BrotliDecompress(&mut &data[..], &mut out)?;
        Ok(out.out)
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
    fn a_message_compressed_piece_by_piece_decodes_whole() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"item\":{i},\"t\":\"x{}\"}},", i * 7919 % 1000).into_bytes())
            .collect();
        // A finished stream fed piece by piece decodes whole.
        let mut enc = Encoder::new(Class::Bulk);
        let mut wire = Vec::new();
        for piece in text.chunks(1024) {
            wire.extend(enc.compress(piece).expect("compress"));
        }
        wire.extend(enc.finish());
        assert_eq!(Decoder::decompress_finished(&wire, 1 << 22).expect("decompress"), text);
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
