//! The link's handshake: Noise KK (X25519, ChaChaPoly, BLAKE2s) with the `snow`
//! crate. Both ends know each other's static link key beforehand (from the signed key
//! documents), so the handshake is two messages and 98 bytes:
//!
//! - initiator → responder, 50 bytes: a 2-byte *hint* (the first two bytes of the
//!   initiator's static public key, so the responder knows which peer's key to try;
//!   it is in the prologue, so tampering with it fails the handshake), then Noise's
//!   `e, es, ss` (32-byte ephemeral key, 16-byte tag of an empty payload);
//! - responder → initiator, 48 bytes: `e, ee, se` (ephemeral key, tag).
//!
//! Both ends are authenticated by their static keys and the session keys have forward
//! secrecy (ephemeral-ephemeral DH). The first message can be replayed by an
//! eavesdropper, but a replayer cannot finish: it lacks the initiator's ephemeral
//! secret. The responder also refuses a first message whose ephemeral key it has seen
//! ([`ReplayGuard`]), and it counts a connection as established only once the
//! initiator's first encrypted message decrypted (key confirmation), so a replay
//! costs it nothing lasting.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use snow::{HandshakeState, StatelessTransportState};

use super::key::LinkKey;

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
/// Bound into every handshake hash.
const PROLOGUE: &[u8] = b"tidings-link/1";
/// Bytes of the initiator's hint.
pub const HINT_LEN: usize = 2;
/// The first handshake message.
pub const MSG1_LEN: usize = HINT_LEN + 48;
/// The second handshake message.
pub const MSG2_LEN: usize = 48;

/// The hint of a static public key.
pub fn hint(public: &[u8; 32]) -> [u8; HINT_LEN] {
    [public[0], public[1]]
}

fn builder<'a>(local: &'a LinkKey, remote: &'a [u8; 32], prologue: &'a [u8]) -> Result<snow::Builder<'a>, String> {
    let params = PATTERN.parse().map_err(|e| format!("noise params: {e}"))?;
    snow::Builder::new(params)
        .local_private_key(local.secret())
        .and_then(|b| b.remote_public_key(remote))
        .and_then(|b| b.prologue(prologue))
        .map_err(|e| format!("noise builder: {e}"))
}

fn prologue(initiator_hint: [u8; HINT_LEN]) -> Vec<u8> {
    let mut p = PROLOGUE.to_vec();
    p.extend_from_slice(&initiator_hint);
    p
}

/// An established session's keys: stateless, so the reader and the writer each keep
/// their own nonce counter (TCP keeps messages in order; anything replayed, dropped or
/// reordered fails to decrypt).
pub struct Cipher {
    state: StatelessTransportState,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher")
    }
}

impl Cipher {
    /// Encrypt `plain` as message number `nonce` of this direction.
    pub fn encrypt(&self, nonce: u64, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; plain.len() + super::frame::TAG_LEN];
        let n = self.state.write_message(nonce, plain, &mut out).map_err(|e| format!("encrypt: {e}"))?;
        out.truncate(n);
        Ok(out)
    }

    /// Decrypt message number `nonce` of the other direction.
    pub fn decrypt(&self, nonce: u64, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; ciphertext.len()];
        let n = self.state.read_message(nonce, ciphertext, &mut out).map_err(|e| format!("decrypt: {e}"))?;
        out.truncate(n);
        Ok(out)
    }
}

/// The initiator's half-done handshake.
pub struct Initiator {
    state: HandshakeState,
}

impl Initiator {
    /// Start a handshake from `local` to the peer whose static key is `remote`: the
    /// state and the first message.
    pub fn start(local: &LinkKey, remote: &[u8; 32]) -> Result<(Self, [u8; MSG1_LEN]), String> {
        let h = hint(local.public());
        let p = prologue(h);
        let mut state = builder(local, remote, &p)?.build_initiator().map_err(|e| format!("noise: {e}"))?;
        let mut msg = [0u8; MSG1_LEN];
        msg[..HINT_LEN].copy_from_slice(&h);
        let n = state.write_message(&[], &mut msg[HINT_LEN..]).map_err(|e| format!("noise: {e}"))?;
        if n != MSG1_LEN - HINT_LEN {
            return Err(format!("noise wrote {n} bytes for the first message"));
        }
        Ok((Self { state }, msg))
    }

    /// Read the responder's answer: the session, or why not (a wrong key, garbage).
    pub fn finish(mut self, msg2: &[u8; MSG2_LEN]) -> Result<Cipher, String> {
        let mut payload = [0u8; MSG2_LEN];
        self.state.read_message(msg2, &mut payload).map_err(|e| format!("handshake refused: {e}"))?;
        let state = self.state.into_stateless_transport_mode().map_err(|e| format!("noise: {e}"))?;
        Ok(Cipher { state })
    }
}

/// Answer a first message from one of `candidates` (peers' static keys): the index of
/// the peer it came from, the session and the answer. Only candidates whose hint
/// matches are tried, so garbage costs one DH per matching peer at most.
pub fn respond(
    local: &LinkKey,
    candidates: &[[u8; 32]],
    msg1: &[u8; MSG1_LEN],
) -> Result<(usize, Cipher, [u8; MSG2_LEN]), String> {
    let h: [u8; HINT_LEN] = [msg1[0], msg1[1]];
    let p = prologue(h);
    for (i, remote) in candidates.iter().enumerate().filter(|(_, k)| hint(k) == h) {
        let mut state = builder(local, remote, &p)?.build_responder().map_err(|e| format!("noise: {e}"))?;
        let mut payload = [0u8; MSG1_LEN];
        if state.read_message(&msg1[HINT_LEN..], &mut payload).is_err() {
            continue;
        }
        let mut msg2 = [0u8; MSG2_LEN];
        let n = state.write_message(&[], &mut msg2).map_err(|e| format!("noise: {e}"))?;
        if n != MSG2_LEN {
            return Err(format!("noise wrote {n} bytes for the second message"));
        }
        let state = state.into_stateless_transport_mode().map_err(|e| format!("noise: {e}"))?;
        return Ok((i, Cipher { state }, msg2));
    }
    Err("no peer's link key opens this handshake".to_owned())
}

/// Ephemeral keys seen, and their order (oldest first).
type Seen = (HashSet<[u8; 32]>, VecDeque<[u8; 32]>);

/// The ephemeral keys of recent first messages, so a replayed one is refused before
/// any work. Bounded: the oldest is forgotten first.
#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    seen: Mutex<Seen>,
}

impl ReplayGuard {
    /// A guard remembering `capacity` handshakes.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, seen: Mutex::new((HashSet::new(), VecDeque::new())) }
    }

    /// Whether `msg1` is new (and remember it).
    pub fn fresh(&self, msg1: &[u8; MSG1_LEN]) -> bool {
        let mut e = [0u8; 32];
        e.copy_from_slice(&msg1[HINT_LEN..HINT_LEN + 32]);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *seen;
        if !set.insert(e) {
            return false;
        }
        order.push_back(e);
        if order.len() > self.capacity
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kk_handshake_is_98_bytes_and_both_sides_agree() {
        let (a, b) = (LinkKey::generate(), LinkKey::generate());
        let stranger = LinkKey::generate();
        let (init, msg1) = Initiator::start(&a, b.public()).expect("start");
        let (i, resp_cipher, msg2) = respond(&b, &[*stranger.public(), *a.public()], &msg1).expect("respond");
        assert_eq!(i, 1);
        assert_eq!(msg1.len() + msg2.len(), 98);
        let init_cipher = init.finish(&msg2).expect("finish");
        let ct = init_cipher.encrypt(0, b"hello").expect("encrypt");
        assert_eq!(resp_cipher.decrypt(0, &ct).expect("decrypt"), b"hello");
        assert!(resp_cipher.decrypt(1, &ct).is_err(), "a replayed message does not decrypt with the next nonce");
    }

    #[test]
    fn a_wrong_key_or_a_tampered_hint_is_refused() {
        let (a, b, c) = (LinkKey::generate(), LinkKey::generate(), LinkKey::generate());
        // a thinks it talks to c, but b answers.
        let (_, msg1) = Initiator::start(&a, c.public()).expect("start");
        assert!(respond(&b, &[*a.public()], &msg1).is_err());
        // b does not know a.
        let (_, msg1) = Initiator::start(&a, b.public()).expect("start");
        assert!(respond(&b, &[*c.public()], &msg1).is_err());
        let mut tampered = msg1;
        tampered[0] ^= 1;
        assert!(respond(&b, &[*a.public()], &tampered).is_err());
    }

    #[test]
    fn the_replay_guard_refuses_a_second_copy_and_is_bounded() {
        let guard = ReplayGuard::new(2);
        let msgs: Vec<[u8; MSG1_LEN]> = (0..3u8).map(|i| [i; MSG1_LEN]).collect();
        assert!(guard.fresh(&msgs[0]));
        assert!(!guard.fresh(&msgs[0]));
        assert!(guard.fresh(&msgs[1]));
        assert!(guard.fresh(&msgs[2]));
        assert!(guard.fresh(&msgs[0]), "forgotten once the bound is passed");
    }
}
