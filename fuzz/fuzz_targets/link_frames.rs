//! Everything a peer's decrypted message goes through: the frame decoder, the
//! transaction header, the brotli decoder (bounded), the compact decoder and the EDU body parser. None
//! may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_federation::link::{compact, compress::Decoder, frame, txn};

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = frame::decode_frames(data) {
        for f in frames {
            if let frame::Frame::Data { bytes, .. } = f {
                let mut prev = 0;
                if let Ok((_, len)) = txn::decode_header(bytes, &mut prev) {
                    let mut dec = Decoder::new(1 << 20);
                    if let Ok(raw) = dec.decompress(&bytes[len..]) {
                        let _ = txn::decode_body(&raw);
                    }
                    let _ = txn::decode_body(&bytes[len..]);
                    let mut table = compact::Table::new();
                    if let Ok(v) = compact::decode(&bytes[len..], "alpha.test", &mut table, 1 << 20) {
                        let _ = txn::decode_value(v);
                    }
                }
            }
        }
    }
});
