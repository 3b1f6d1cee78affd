//! The transport cipher of an established link session: one ChaCha20-Poly1305 key per
//! direction, message `n` of a direction sealed with nonce `n` (4 zero bytes and `n`
//! as 8 little-endian bytes) and no associated data, exactly Noise's transport rule.
//!
//! Ours rather than snow's because a resumed session ([`super::resume`]) has keys
//! that no Noise handshake made, and snow builds a transport state only out of a
//! handshake. A full handshake's keys come from snow's split; both kinds of session
//! then run through this one code path (and the tests check it against snow's own
//! transport). Stateless: the reader and the writer each keep their own counter;
//! TCP keeps order, so anything replayed, dropped or reordered fails to decrypt.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

use super::frame::TAG_LEN;

/// The keys of one session, seen from one end.
pub struct Cipher {
    send: ChaCha20Poly1305,
    recv: ChaCha20Poly1305,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher")
    }
}

fn nonce(n: u64) -> chacha20poly1305::Nonce {
    let mut bytes = [0u8; 12];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    bytes.into()
}

impl Cipher {
    /// A session that seals with `send` and opens with `recv`.
    pub fn new(send: &[u8; 32], recv: &[u8; 32]) -> Self {
        Self { send: ChaCha20Poly1305::new(send.into()), recv: ChaCha20Poly1305::new(recv.into()) }
    }

    /// The initiator's end of a session whose initiator → responder key is `i2r` and
    /// responder → initiator key `r2i`.
    pub fn initiator(i2r: &[u8; 32], r2i: &[u8; 32]) -> Self {
        Self::new(i2r, r2i)
    }

    /// The responder's end of the same session.
    pub fn responder(i2r: &[u8; 32], r2i: &[u8; 32]) -> Self {
        Self::new(r2i, i2r)
    }

    /// Encrypt `plain` as message number `n` of this direction: ciphertext and tag.
    pub fn encrypt(&self, n: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(plain.len() + TAG_LEN);
        out.extend_from_slice(plain);
        let tag = self.send.encrypt_in_place_detached(&nonce(n), &[], &mut out).map_err(|_| "encrypt: too long")?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypt message number `n` of the other direction.
    pub fn decrypt(&self, n: u64, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let body = ciphertext.len().checked_sub(TAG_LEN).ok_or("decrypt: shorter than a tag")?;
        let (sealed, tag) = ciphertext.split_at(body);
        let mut out = sealed.to_vec();
        self.recv
            .decrypt_in_place_detached(&nonce(n), &[], &mut out, tag.into())
            .map_err(|_| "decrypt: the message does not open (wrong key, replayed, reordered or altered)")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_agree_and_a_wrong_nonce_or_a_flipped_bit_fails() {
        let (i2r, r2i) = ([1u8; 32], [2u8; 32]);
        let (a, b) = (Cipher::initiator(&i2r, &r2i), Cipher::responder(&i2r, &r2i));
        let ct = a.encrypt(0, b"hello").expect("encrypt");
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(b.decrypt(0, &ct).expect("decrypt"), b"hello");
        assert!(b.decrypt(1, &ct).is_err(), "replayed as the next message");
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(b.decrypt(0, &bad).is_err());
        assert!(b.decrypt(0, &ct[..TAG_LEN - 1]).is_err(), "shorter than a tag");
        assert!(a.decrypt(0, &ct).is_err(), "each direction has its own key");
        let back = b.encrypt(0, b"").expect("encrypt");
        assert_eq!(a.decrypt(0, &back).expect("decrypt"), b"");
    }
}
