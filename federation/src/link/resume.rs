//! Resumed handshakes: after a full Noise KK handshake both ends keep, in memory only,
//! a *ticket* for the peer: a 32-byte resumption secret `R` derived from the session,
//! an 8-byte id derived from `R`, and an expiry. The next call may then open with one
//! 25-byte message instead of the 98-byte handshake, and needs no answer:
//!
//! `0x80 (marker) || id (8) || tag (16)`, the tag a BLAKE2s MAC under a key from `R`
//! over the marker, the id and both static public keys (initiator's first).
//!
//! A full first message starts with its hint, whose top bit is always clear
//! ([`super::noise::hint`]), so the first byte says which kind a call opens with
//! ([`Hello::of`]). Both session keys (one per direction, nonces from 0) come from
//! `R`, and `R` is **single-use**: the initiator replaces its ticket with
//! `R' = KDF(R, "next")` as it sends, the responder removes the ticket when the tag
//! verifies and keeps `R'`. A replayed resume message finds no ticket and is refused
//! (closed, no answer, nothing kept), and no two connections ever get keys from the
//! same `R` (each end uses each `R` once, as initiator or responder, under one lock),
//! so a nonce is never used twice under one key.
//!
//! The initiator's `R'` may be dialed only once the resumed connection heard from the
//! responder (only a responder that accepted the ticket can speak on it): a connection
//! that ends before that forgets the ticket, so any failure (unknown ticket, bad tag,
//! expiry, the peer's restart, a cut) makes the next call a full handshake, and the
//! initiator never loops on resumes. `R'` keeps its predecessor's expiry, so a full
//! handshake comes at least every `link.resume_ms`.
//!
//! KDF: keyed BLAKE2s-256 over the label `tidings-link/1 resume`, a purpose and the
//! inputs. `R` itself is keyed by the initiator → responder key of the full
//! handshake's split, over the other key and the handshake hash: only the two ends
//! know it, and it is none of the transport keys (a one-way function of both).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{KeyInit, Mac};
use blake2::{Blake2sMac, Blake2sMac256};

use super::cipher::Cipher;

/// The first byte of a resume message.
pub const MARKER: u8 = 0x80;
/// Bytes of a ticket id.
pub const ID_LEN: usize = 8;
/// Bytes of the tag proving knowledge of `R`.
pub const TAG_LEN: usize = 16;
/// A resume message: marker, ticket id, tag.
pub const RESUME_LEN: usize = 1 + ID_LEN + TAG_LEN;
/// The label every derivation is keyed with.
const LABEL: &[u8] = b"tidings-link/1 resume";

/// What the first byte of a call says it opens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hello {
    /// A full handshake's first message (its hint's top bit is clear).
    Full,
    /// A resume message.
    Resume,
}

impl Hello {
    /// The kind of the call whose first byte is `first`; `None` for what neither
    /// starts with (refused).
    pub fn of(first: u8) -> Option<Hello> {
        match first {
            0x00..=0x7f => Some(Hello::Full),
            MARKER => Some(Hello::Resume),
            _ => None,
        }
    }
}

/// BLAKE2s-256 keyed with `key` over the label, `purpose` and `parts`.
fn kdf(key: &[u8; 32], purpose: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Blake2sMac256 as KeyInit>::new(key.into());
    mac.update(LABEL);
    mac.update(&[0]);
    mac.update(purpose);
    mac.update(&[0]);
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// A resumption secret `R` (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `R` of a full handshake: keyed by its initiator → responder key `i2r`, over
    /// its responder → initiator key `r2i` and the handshake hash `h`.
    pub fn from_handshake(i2r: &[u8; 32], r2i: &[u8; 32], h: &[u8]) -> Secret {
        Secret(kdf(i2r, b"secret", &[r2i, h]))
    }

    /// The id a ticket of this secret goes by.
    pub fn id(&self) -> [u8; ID_LEN] {
        let full = kdf(&self.0, b"id", &[]);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&full[..ID_LEN]);
        id
    }

    /// The secret that replaces this one once it is used.
    pub fn next(&self) -> Secret {
        Secret(kdf(&self.0, b"next", &[]))
    }

    /// The keys of the session resumed with it: `(i2r, r2i)`.
    pub fn session(&self) -> ([u8; 32], [u8; 32]) {
        (kdf(&self.0, b"i2r", &[]), kdf(&self.0, b"r2i", &[]))
    }

    fn tag_mac(&self, id: &[u8; ID_LEN], initiator: &[u8; 32], responder: &[u8; 32]) -> Blake2sMac<U16> {
        let key = kdf(&self.0, b"auth", &[]);
        let mut mac = <Blake2sMac<U16> as KeyInit>::new((&key).into());
        mac.update(&[MARKER]);
        mac.update(id);
        mac.update(initiator);
        mac.update(responder);
        mac
    }

    /// The resume message of this secret from `initiator` to `responder`.
    pub fn message(&self, initiator: &[u8; 32], responder: &[u8; 32]) -> [u8; RESUME_LEN] {
        let id = self.id();
        let tag = self.tag_mac(&id, initiator, responder).finalize().into_bytes();
        let mut msg = [0u8; RESUME_LEN];
        msg[0] = MARKER;
        msg[1..1 + ID_LEN].copy_from_slice(&id);
        msg[1 + ID_LEN..].copy_from_slice(&tag);
        msg
    }

    /// Whether `msg` is this secret's resume message from `initiator` to `responder`
    /// (the tag compared in constant time).
    pub fn verifies(&self, msg: &[u8; RESUME_LEN], initiator: &[u8; 32], responder: &[u8; 32]) -> bool {
        let id = self.id();
        msg[0] == MARKER
            && msg[1..1 + ID_LEN] == id
            && self.tag_mac(&id, initiator, responder).verify_slice(&msg[1 + ID_LEN..]).is_ok()
    }
}

/// One peer's ticket.
#[derive(Debug)]
struct Ticket {
    secret: Secret,
    id: [u8; ID_LEN],
    /// The peer's static key when the full handshake was made: a ticket never
    /// outlives a change of key.
    remote: [u8; 32],
    /// The full handshake's time plus `resume_ms`; successors keep it.
    expires: Instant,
    /// The line's round trip as the full handshake measured it (the cork's measure
    /// until the resumed connection measures one).
    rtt: Duration,
    /// Whether this end may open a call with it.
    dialable: Dialable,
}

/// Whether a ticket may open a call.
#[derive(Debug)]
enum Dialable {
    /// Yes: it came from a full handshake, or this end accepted its predecessor.
    Yes,
    /// Once the connection resumed with its predecessor heard from the responder
    /// (the connection's flag; read when the next call is made, so after it ended).
    When(Arc<AtomicBool>),
    /// Not (yet): its predecessor's call is being made.
    Not,
}

impl Dialable {
    fn now(&self) -> bool {
        match self {
            Dialable::Yes => true,
            Dialable::When(heard) => heard.load(Ordering::Relaxed),
            Dialable::Not => false,
        }
    }
}

impl Ticket {
    fn new(secret: Secret, remote: [u8; 32], expires: Instant, rtt: Duration, dialable: Dialable) -> Ticket {
        Ticket { id: secret.id(), secret, remote, expires, rtt, dialable }
    }
}

/// A call this end opens with a ticket.
#[derive(Debug)]
pub struct Resumed {
    /// The message to send first.
    pub message: [u8; RESUME_LEN],
    /// The session.
    pub cipher: Cipher,
    /// The line's round trip the ticket remembers.
    pub rtt: Duration,
    /// The id of the successor ticket, for [`Tickets::confirm_by`] and [`Tickets::settle`].
    pub next_id: [u8; ID_LEN],
}

/// A call the peer opened with a ticket, accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The peer.
    pub peer: String,
    /// The session.
    pub cipher: Cipher,
    /// The line's round trip the ticket remembers.
    pub rtt: Duration,
}

/// Every ticket of this server: at most one per configured link peer (only an
/// authenticated handshake with one stores a ticket, so strangers cannot add any),
/// in memory only (after a restart every call is a full handshake).
#[derive(Debug)]
pub struct Tickets {
    local: [u8; 32],
    lifetime: Option<Duration>,
    by_peer: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    /// Tickets of the server whose static public key is `local`, each valid for
    /// `lifetime_ms` from its full handshake; 0 = resumption off (nothing is kept,
    /// every resume message is refused).
    pub fn new(local: [u8; 32], lifetime_ms: u64) -> Tickets {
        let lifetime = (lifetime_ms > 0).then(|| Duration::from_millis(lifetime_ms));
        Tickets { local, lifetime, by_peer: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ticket>> {
        self.by_peer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a full handshake with `peer` (whose static key is `remote`) that became
    /// the peer's connection: its ticket, replacing any other.
    pub fn store(&self, peer: &str, remote: [u8; 32], secret: Secret, rtt: Duration, now: Instant) {
        let Some(lifetime) = self.lifetime else { return };
        self.lock().insert(peer.to_owned(), Ticket::new(secret, remote, now + lifetime, rtt, Dialable::Yes));
    }

    /// Open a call to `peer` (whose static key is now `remote`) with its ticket, if
    /// one may be dialed: the ticket is replaced by its successor (not dialable until
    /// [`Tickets::confirm_by`]'s flag says so) before the message is given out.
    /// `None`: a full handshake (a ticket that may not be dialed is forgotten).
    pub fn resume(&self, peer: &str, remote: &[u8; 32], now: Instant) -> Option<Resumed> {
        let mut tickets = self.lock();
        let t = tickets.get(peer)?;
        if !t.dialable.now() || now >= t.expires || t.remote != *remote {
            tickets.remove(peer);
            return None;
        }
        let t = tickets.remove(peer)?;
        let (i2r, r2i) = t.secret.session();
        let message = t.secret.message(&self.local, remote);
        let next = Ticket::new(t.secret.next(), t.remote, t.expires, t.rtt, Dialable::Not);
        let next_id = next.id;
        tickets.insert(peer.to_owned(), next);
        Some(Resumed { message, cipher: Cipher::initiator(&i2r, &r2i), rtt: t.rtt, next_id })
    }

    /// The call resumed with [`Tickets::resume`] runs as a connection whose `heard`
    /// flag turns true once a message of the responder's decrypted: the successor may
    /// be dialed once it is; a call that ended without (refused, or cut before the
    /// answer) leaves it false, and the next call forgets the ticket and makes a full
    /// handshake. A ticket replaced since (another handshake) is left alone.
    pub fn confirm_by(&self, peer: &str, next_id: [u8; ID_LEN], heard: Arc<AtomicBool>) {
        if let Some(t) = self.lock().get_mut(peer).filter(|t| t.id == next_id) {
            t.dialable = Dialable::When(heard);
        }
    }

    /// The call resumed with [`Tickets::resume`] is over before it ran (it could not
    /// be written, or the tie-break closed it): its successor is forgotten unless
    /// `heard`. A ticket replaced since is left alone.
    pub fn settle(&self, peer: &str, next_id: [u8; ID_LEN], heard: bool) {
        let mut tickets = self.lock();
        if let Some(t) = tickets.get_mut(peer).filter(|t| t.id == next_id) {
            if heard {
                t.dialable = Dialable::Yes;
            } else {
                tickets.remove(peer);
            }
        }
    }

    /// Answer a resume message: the ticket whose id it names, if its tag verifies
    /// against the peer's static key (`key_of`, the key known now) and it has not
    /// expired. The ticket is consumed and its successor kept. `None`: refused,
    /// nothing kept (an expired or mismatched ticket is dropped).
    pub fn accept(
        &self,
        msg: &[u8; RESUME_LEN],
        key_of: impl Fn(&str) -> Option<[u8; 32]>,
        now: Instant,
    ) -> Option<Accepted> {
        self.lifetime?;
        let mut tickets = self.lock();
        let peer = tickets.iter().find(|(_, t)| msg[1..1 + ID_LEN] == t.id).map(|(p, _)| p.clone())?;
        let t = tickets.get(&peer)?;
        if now >= t.expires || key_of(&peer) != Some(t.remote) {
            tickets.remove(&peer);
            return None;
        }
        if !t.secret.verifies(msg, &t.remote, &self.local) {
            return None;
        }
        let t = tickets.remove(&peer)?;
        let (i2r, r2i) = t.secret.session();
        tickets.insert(peer.clone(), Ticket::new(t.secret.next(), t.remote, t.expires, t.rtt, Dialable::Yes));
        Some(Accepted { peer, cipher: Cipher::responder(&i2r, &r2i), rtt: t.rtt })
    }

    /// Forget `peer`'s ticket.
    pub fn forget(&self, peer: &str) {
        self.lock().remove(peer);
    }

    /// How many tickets are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 32] = [0xa; 32];
    const B: [u8; 32] = [0xb; 32];
    const DAY: u64 = 86_400_000;

    /// alpha (key A) and beta (key B) after a full handshake alpha dialed.
    fn pair(now: Instant) -> (Tickets, Tickets) {
        let r = Secret::from_handshake(&[1; 32], &[2; 32], &[3; 32]);
        let (a, b) = (Tickets::new(A, DAY), Tickets::new(B, DAY));
        a.store("beta", B, r.clone(), Duration::from_millis(2400), now);
        b.store("alpha", A, r, Duration::from_millis(2400), now);
        (a, b)
    }

    fn keys(peer: &str) -> Option<[u8; 32]> {
        match peer {
            "alpha" => Some(A),
            "beta" => Some(B),
            _ => None,
        }
    }

    #[test]
    fn the_secret_is_none_of_the_transport_keys_and_derivations_differ() {
        let (i2r, r2i) = ([1u8; 32], [2u8; 32]);
        let r = Secret::from_handshake(&i2r, &r2i, &[3; 32]);
        assert_ne!(r.0, i2r);
        assert_ne!(r.0, r2i);
        assert_ne!(r, Secret::from_handshake(&i2r, &r2i, &[4; 32]), "the handshake hash counts");
        assert_ne!(r, Secret::from_handshake(&r2i, &i2r, &[3; 32]), "the order of the keys counts");
        let (k1, k2) = r.session();
        let all = [r.0, r.next().0, k1, k2, kdf(&r.0, b"auth", &[])];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(r.message(&A, &B).len(), 25);
    }

    #[test]
    fn a_resume_opens_the_same_session_on_both_ends_and_is_single_use() {
        let now = Instant::now();
        let (a, b) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket to dial");
        assert_eq!(r.message[0], MARKER);
        assert_eq!(Hello::of(r.message[0]), Some(Hello::Resume));
        let heard = Arc::new(AtomicBool::new(false));
        a.confirm_by("beta", r.next_id, Arc::clone(&heard));
        let acc = b.accept(&r.message, keys, now).expect("accepted");
        assert_eq!(acc.peer, "alpha");
        assert_eq!(acc.rtt, Duration::from_millis(2400));
        let ct = r.cipher.encrypt(0, b"first").expect("encrypt");
        assert_eq!(acc.cipher.decrypt(0, &ct).expect("decrypt"), b"first");
        let back = acc.cipher.encrypt(0, b"ack").expect("encrypt");
        assert_eq!(r.cipher.decrypt(0, &back).expect("decrypt"), b"ack");

        // The same message again: no ticket opens it, and beta keeps its successor.
        assert!(b.accept(&r.message, keys, now).is_none(), "a replay is refused");
        assert_eq!(b.len(), 1);

        // The call heard beta: alpha may resume again, with a fresh secret, and beta
        // accepts that one (either side may dial the next).
        heard.store(true, Ordering::Relaxed);
        let r2 = a.resume("beta", &B, now).expect("the successor");
        assert_ne!(r2.message, r.message);
        assert!(r2.cipher.encrypt(0, b"first").expect("encrypt") != ct, "new keys");
        assert!(b.accept(&r2.message, keys, now).is_some());
    }

    #[test]
    fn either_side_may_resume_and_crossed_resumes_both_fail_safely() {
        let now = Instant::now();
        let (a, b) = pair(now);
        // beta dials this time.
        let r = b.resume("alpha", &A, now).expect("beta holds the same ticket");
        assert!(a.accept(&r.message, keys, now).is_some());
        // Both dial at once with the successors: each has replaced its own ticket
        // before the other's message arrives, so both are refused (no two
        // connections ever get the same keys), and the next calls are full.
        b.settle("alpha", r.next_id, true);
        let from_a = a.resume("beta", &B, now).expect("alpha's successor");
        let from_b = b.resume("alpha", &A, now).expect("beta's successor");
        assert!(b.accept(&from_a.message, keys, now).is_none());
        assert!(a.accept(&from_b.message, keys, now).is_none());
        a.settle("beta", from_a.next_id, false);
        b.settle("alpha", from_b.next_id, false);
        assert!(a.is_empty() && b.is_empty());
    }

    #[test]
    fn a_call_that_never_heard_the_peer_forgets_the_ticket() {
        let now = Instant::now();
        let (a, _b) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket");
        a.confirm_by("beta", r.next_id, Arc::new(AtomicBool::new(false)));
        assert!(a.resume("beta", &B, now).is_none(), "a full handshake next");
        assert!(a.is_empty(), "and the ticket is gone");
        // The same when the call could not even be written.
        let (a, _b) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket");
        a.settle("beta", r.next_id, false);
        assert!(a.is_empty());
        // And before its connection ran at all (never loops on resumes).
        let (a, _b) = pair(now);
        a.resume("beta", &B, now).expect("a ticket");
        assert!(a.resume("beta", &B, now).is_none());
    }

    #[test]
    fn settle_leaves_a_newer_ticket_alone() {
        let now = Instant::now();
        let (a, _b) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket");
        // A full handshake replaced the ticket meanwhile.
        a.store("beta", B, Secret::from_handshake(&[5; 32], &[6; 32], &[7; 32]), Duration::ZERO, now);
        a.settle("beta", r.next_id, false);
        assert!(a.resume("beta", &B, now).is_some());
    }

    #[test]
    fn expired_tickets_are_refused_on_both_ends_and_successors_keep_the_expiry() {
        let now = Instant::now();
        let (a, b) = pair(now);
        let r = a.resume("beta", &B, now + Duration::from_millis(DAY - 1)).expect("still valid");
        a.settle("beta", r.next_id, true);
        let late = now + Duration::from_millis(DAY);
        assert!(b.accept(&r.message, keys, late).is_none(), "expired at the responder");
        assert!(b.is_empty(), "and dropped");
        assert!(a.resume("beta", &B, late).is_none(), "the successor expires with its predecessor");
        assert!(a.is_empty());
    }

    #[test]
    fn a_changed_key_garbage_a_bad_tag_or_a_reflection_is_refused() {
        let now = Instant::now();
        let (a, b) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket");
        let mut bad = r.message;
        bad[RESUME_LEN - 1] ^= 1;
        assert!(b.accept(&bad, keys, now).is_none(), "bad tag");
        assert!(b.accept(&[MARKER; RESUME_LEN], keys, now).is_none(), "garbage");
        assert!(b.accept(&[0; RESUME_LEN], keys, now).is_none(), "garbage");
        // Sent back to its sender (whose ticket would match if it still had it).
        let (a2, _) = pair(now);
        assert!(a2.accept(&r.message, keys, now).is_none(), "a reflected message");
        // The peer's key changed since the handshake: the ticket goes.
        assert!(b.accept(&r.message, |_| Some([0xc; 32]), now).is_none());
        assert!(b.is_empty());
        // Dialing a peer whose key changed: a full handshake.
        assert!(a.resume("beta", &[0xc; 32], now).is_none());
    }

    #[test]
    fn resumption_off_keeps_nothing_and_refuses_everything() {
        let now = Instant::now();
        let off = Tickets::new(B, 0);
        off.store("alpha", A, Secret::from_handshake(&[1; 32], &[2; 32], &[3; 32]), Duration::ZERO, now);
        assert!(off.is_empty());
        let (a, _) = pair(now);
        let r = a.resume("beta", &B, now).expect("a ticket");
        assert!(off.accept(&r.message, keys, now).is_none());
    }

    #[test]
    fn the_first_byte_tells_the_kinds_apart() {
        assert_eq!(Hello::of(0x00), Some(Hello::Full));
        assert_eq!(Hello::of(0x7f), Some(Hello::Full));
        assert_eq!(Hello::of(MARKER), Some(Hello::Resume));
        assert_eq!(Hello::of(0x81), None);
        assert_eq!(Hello::of(0xff), None);
    }
}
