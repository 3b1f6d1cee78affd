//! The link's handshake: Noise KK (X25519, ChaChaPoly, BLAKE2s) with the `snow`
//! crate. Both ends know each other's static link key beforehand (from the signed key
//! documents), so the handshake is two messages and 98 bytes:
//!
//! - initiator → responder, 50 bytes: a 2-byte *hint* (the first 15 bits of the
//!   initiator's static public key, top bit clear, so the responder knows which
//!   peer's key to try and a resume message, whose first byte has the top bit set,
//!   is never taken for one; it is in the prologue, so tampering with it fails the
//!   handshake), then Noise's `e, es, ss` (32-byte ephemeral key, 16-byte tag of an
//!   empty payload);
//! - responder → initiator, 48 bytes: `e, ee, se` (ephemeral key, tag).
//!
//! Both ends are authenticated by their static keys and the session keys have forward
//! secrecy (ephemeral-ephemeral DH). The first message can be replayed by an
//! eavesdropper, but a replayer cannot finish: it lacks the initiator's ephemeral
//! secret. The responder also refuses a first message whose ephemeral key it has seen
//! ([`ReplayGuard`]), and it counts a connection as established only once the
//! initiator's first encrypted message decrypted (key confirmation), so a replay
//! costs it nothing lasting.
//!
//! The session's transport keys are snow's split (`risky-raw-split`), run through
//! [`Cipher`] exactly as Noise's transport would; the split and the handshake hash
//! also give the resumption secret of [`super::resume`].

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use snow::HandshakeState;

use super::cipher::Cipher;
use super::key::LinkKey;
use super::resume::Secret;

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

/// The hint of a static public key: its first two bytes with the top bit cleared
/// (a first byte with the top bit set opens a resumed call, [`super::resume`]).
pub fn hint(public: &[u8; 32]) -> [u8; HINT_LEN] {
    [public[0] & 0x7f, public[1]]
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

/// The session of a finished handshake: the transport cipher of this end, and the
/// resumption secret. The split's first key is the initiator's sending key.
fn split(state: &mut HandshakeState) -> Result<(Cipher, Secret), String> {
    if !state.is_handshake_finished() {
        return Err("noise: the handshake is not finished".into());
    }
    let h = state.get_handshake_hash().to_vec();
    let (i2r, r2i) = state.dangerously_get_raw_split();
    let cipher = if state.is_initiator() { Cipher::initiator(&i2r, &r2i) } else { Cipher::responder(&i2r, &r2i) };
    Ok((cipher, Secret::from_handshake(&i2r, &r2i, &h)))
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

    /// Read the responder's answer: the session and its resumption secret, or why
    /// not (a wrong key, garbage).
    pub fn finish(mut self, msg2: &[u8; MSG2_LEN]) -> Result<(Cipher, Secret), String> {
        let mut payload = [0u8; MSG2_LEN];
        self.state.read_message(msg2, &mut payload).map_err(|e| format!("handshake refused: {e}"))?;
        split(&mut self.state)
    }
}

/// What [`respond`] gives: the index of the candidate the first message came from,
/// the session, the answer to send and the resumption secret.
pub type Responded = (usize, Cipher, [u8; MSG2_LEN], Secret);

/// Answer a first message from one of `candidates` (peers' static keys). Only
/// candidates whose hint matches are tried, so garbage costs one DH per matching peer
/// at most; a first byte with the top bit set is no hint at all.
pub fn respond(local: &LinkKey, candidates: &[[u8; 32]], msg1: &[u8; MSG1_LEN]) -> Result<Responded, String> {
    let h: [u8; HINT_LEN] = [msg1[0], msg1[1]];
    if h[0] & 0x80 != 0 {
        return Err("not a first handshake message".to_owned());
    }
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
        let (cipher, secret) = split(&mut state)?;
        return Ok((i, cipher, msg2, secret));
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
        let (i, resp_cipher, msg2, resp_secret) =
            respond(&b, &[*stranger.public(), *a.public()], &msg1).expect("respond");
        assert_eq!(i, 1);
        assert_eq!(msg1.len() + msg2.len(), 98);
        assert_eq!(msg1[0] & 0x80, 0, "a full first message never looks like a resume");
        let (init_cipher, init_secret) = init.finish(&msg2).expect("finish");
        let ct = init_cipher.encrypt(0, b"hello").expect("encrypt");
        assert_eq!(resp_cipher.decrypt(0, &ct).expect("decrypt"), b"hello");
        assert!(resp_cipher.decrypt(1, &ct).is_err(), "a replayed message does not decrypt with the next nonce");
        let back = resp_cipher.encrypt(0, b"answer").expect("encrypt");
        assert_eq!(init_cipher.decrypt(0, &back).expect("decrypt"), b"answer");
        assert_eq!(init_secret, resp_secret, "both ends derive the same resumption secret");
        // Another handshake between the same keys: another secret.
        let (init, msg1) = Initiator::start(&a, b.public()).expect("start");
        let (_, _, msg2, again) = respond(&b, &[*a.public()], &msg1).expect("respond");
        assert_ne!(again, resp_secret);
        assert_eq!(init.finish(&msg2).expect("finish").1, again);
    }

    /// Our transport cipher is Noise's: what it seals, snow's own transport state of
    /// the other end opens, both ways.
    #[test]
    fn the_transport_cipher_matches_snows() {
        let (a, b) = (LinkKey::generate(), LinkKey::generate());
        let p = prologue(hint(a.public()));
        let mut init =
            builder(&a, b.public(), &p).and_then(|x| x.build_initiator().map_err(|e| e.to_string())).unwrap();
        let mut resp =
            builder(&b, a.public(), &p).and_then(|x| x.build_responder().map_err(|e| e.to_string())).unwrap();
        let (mut m1, mut m2, mut buf) = ([0u8; 48], [0u8; 48], [0u8; 64]);
        init.write_message(&[], &mut m1).unwrap();
        resp.read_message(&m1, &mut buf).unwrap();
        resp.write_message(&[], &mut m2).unwrap();
        init.read_message(&m2, &mut buf).unwrap();
        let (ours, _) = split(&mut init).expect("split");
        let snows = resp.into_stateless_transport_mode().unwrap();
        for n in [0u64, 1, 7, 300] {
            let ct = ours.encrypt(n, b"presence").expect("encrypt");
            let mut out = [0u8; 64];
            let len = snows.read_message(n, &ct, &mut out).expect("snow opens ours");
            assert_eq!(&out[..len], b"presence");
            let len = snows.write_message(n, b"ack", &mut out).expect("snow seals");
            assert_eq!(ours.decrypt(n, &out[..len]).expect("ours opens snow's"), b"ack");
        }
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
        let mut marked = msg1;
        marked[0] |= 0x80;
        assert!(respond(&b, &[*a.public()], &marked).is_err(), "a first byte with the top bit set is no hint");
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
