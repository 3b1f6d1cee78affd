//! Everything a peer's decrypted message goes through: the frame decoder, the
//! transaction header, the brotli contexts (bounded, carried across frames), the
//! compact decoder and the EDU body parser. None may panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidings_federation::link::{compact, compress::RecvStreams, frame, txn};

fuzz_target!(|data: &[u8]| {
    if let Ok(frames) = frame::decode_frames(data) {
        // One set of contexts for the whole input, as on a connection: the streams'
        // state carries from frame to frame, and `End` frames drop it.
        let mut streams = RecvStreams::default();
        for f in frames {
            if let frame::Frame::End(class) = f {
                streams.end(class);
            }
            if let frame::Frame::Data { class, bytes, .. } = f {
                let mut prev = txn::Previous::default();
                if let Ok((_, len)) = txn::decode_header(bytes, &mut prev) {
                    if let Ok(raw) = streams.decompress(class, &bytes[len..], 1 << 20) {
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
