//! One established link connection: a writer and a reader task over an encrypted
//! TCP stream, carrying transactions both ways.
//!
//! - **Sending.** [`Conn::send`] queues a stored transaction in its class and gives a
//!   receiver that resolves when the far side *committed* it (`Ack`) or refused to
//!   (`Nack`); a cut drops it (the sender retries the same txnId on the next
//!   connection; the outbox stays the source of truth). The writer packs control
//!   frames, then each class in strict priority, into messages sized and paced by
//!   the flow control ([`super::flow`]); bulk messages are cut into chunks and
//!   compressed piece by piece, so presence waits behind about half a second of bulk
//!   at most.
//! - **Cork.** The writer waits a hundredth of the line's round trip after work
//!   appears (so what arrives together leaves together), a tenth when only a flow
//!   report is due ([`CORK_PER_RTT`], [`REPORT_CORK_PER_RTT`]).
//! - **Receiving.** Each message counts as traffic for the peer's short watchdog. A
//!   transaction is applied through core's exchange (atomically) and acknowledged
//!   after the commit; acks ride in the next message either way.
//! - **Lazy acks.** A presence transaction the sender will replace when something
//!   newer is due, and whose body is smaller than an ack message of its own
//!   ([`LAZY_BODY`]), goes marked `lazy`: its ack, and the flow report of a message
//!   that carried nothing else, wait for a message that goes anyway (data, another
//!   ack, at the latest the ping). The sender does not wait for it: a newer change
//!   replaces the transaction, and resending its few bytes costs less than the ack.
//!   So a lone change costs one message on the line.
//! - **Liveness.** With nothing written for `ping_after`, a `Ping` (18 bytes on the
//!   line) goes; with nothing read for `dead_after`, the connection is closed. In
//!   sessions mode, with nothing but pings for `idle_hangup`, it hangs up, by a
//!   `Bye` both ends say ([`Conn::hang_up`]), never while a sender is about to use
//!   the call ([`Conn::busy`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tidings_core::exchange::IncomingEdu;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, oneshot, watch};

use super::budget::Budget;
use super::compact;
use super::compress::{Encoder, RecvStreams, SendStreams};

/// Bulk messages up to this many raw bytes are compressed into the class's stream at
/// once; larger ones piece by piece as they leave.
const WHOLE: usize = 4096;
/// Presence and short messages up to this many raw bytes are encoded whole, so the
/// compact form can be chosen (a batch of 50 presence updates is about 5.5 KiB of JSON).
const WHOLE_SHORT: usize = 64 * 1024;
use super::cipher::Cipher;
use super::flow::Flow;
use super::frame::{self, Class, Encoding, Frame, MAX_PLAINTEXT, TAG_LEN};
use super::txn;
use super::yielding::BulkYield;
use crate::transport::BoxFuture;

/// How long the writer waits for more work once some appeared, as a part of the
/// line's round trip (the handshake's until the flow control measured one): 1/100,
/// 24 ms on the seed's line (2.4 s). A line played faster (the site-day's scaled
/// line) corks proportionally shorter, so what a cork gathers does not depend on
/// the speed of the play.
pub const CORK_PER_RTT: u32 = 100;
/// How long a flow report alone waits for company, as a part of the round trip: 1/10.
pub const REPORT_CORK_PER_RTT: u32 = 10;
/// Raw bytes of a message compressed at a time (bulk is compressed as it leaves).
const PIECE: usize = 1024;
/// The largest encoded body of a presence transaction that goes `lazy`: what an ack
/// of its own costs on the line (length prefix, tag, the ack frame).
pub const LAZY_BODY: usize = 1 + TAG_LEN + 2;

/// A compact form this small goes as it is, even when the class's warm stream has
/// been winning: a brotli flush costs bytes of its own. Measured (`link-bench`, one
/// status change of a known user): 15 bytes compact, 33 in the warm stream.
const SMALL_COMPACT: usize = 32;

/// How many message budgets of presence one message may carry (about two seconds of
/// line): a batch of 50 changes, 261 bytes in the compact form, goes in one message
/// on the seed's line instead of five, each with its own tag and flow report.
const PRESENCE_MESSAGES: usize = 8;

/// How the far side acknowledged a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acked {
    /// It went `lazy` (its ack waited for a message that went anyway), so the time
    /// to its ack is no round trip of the line.
    pub lazily: bool,
}

/// The link's view of core: where received transactions go, who hears of traffic,
/// and when what waits to be sent is due.
pub trait Inbound: Send + Sync + std::fmt::Debug {
    /// A message arrived from `peer` (counts for its short watchdog).
    fn heard(&self, peer: &str);
    /// A call to `peer` is up (`true`; sessions) or ended: while it is up, whatever
    /// waits for the peer goes at once.
    fn calling(&self, peer: &str, up: bool) {
        let _ = (peer, up);
    }
    /// How long until the presence batch waiting for `peer` closes, if one waits:
    /// bulk gives way meanwhile ([`super::yielding`]). By default none waits.
    fn presence_due(&self, peer: &str) -> Option<Duration> {
        let _ = peer;
        None
    }
    /// Apply a transaction from `peer`; `Ok` once committed (or seen before).
    fn receive<'a>(
        &'a self,
        peer: &'a str,
        txn_id: String,
        edus: Vec<IncomingEdu>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Figures of one peer's link, across its connections.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// Bytes written on the line (after compression and encryption, handshakes included).
    pub bytes_sent: AtomicU64,
    /// Bytes read from the line.
    pub bytes_received: AtomicU64,
    /// The last round trip of a presence transaction to its ack, in ms.
    pub rtt_ms: AtomicU64,
    /// Calls this side made that were answered (handshake completed).
    pub calls: AtomicU64,
    /// Time connected, in ms, of connections that ended.
    pub connected_ms: AtomicU64,
    /// Whole minutes billed for connections that ended (each rounded up).
    pub billed_minutes: AtomicU64,
    /// [`LinkStats::bytes_sent`] by what the bytes carried: `[control, presence,
    /// short, bulk]`. Control is acks, flow reports, pings and handshakes; a data
    /// frame counts for its class; a message's length prefix and tag count for the
    /// most urgent data class in it (control when it has none). They add up to
    /// `bytes_sent`.
    pub bytes_sent_by_class: [AtomicU64; 4],
}

impl LinkStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Count `n` bytes written for `class` (`None`: control).
    pub fn sent(&self, class: Option<Class>, n: u64) {
        Self::add(&self.bytes_sent, n);
        Self::add(&self.bytes_sent_by_class[class.map_or(0, |c| c.index() + 1)], n);
    }

    /// [`LinkStats::bytes_sent_by_class`] now.
    pub fn sent_by_class(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.bytes_sent_by_class[i].load(Ordering::Relaxed))
    }
}

/// How a connection behaves.
#[derive(Debug, Clone)]
pub struct ConnParams {
    /// The peer's server name.
    pub peer: String,
    /// This server's name (the compact encoding writes its users' IDs short).
    pub me: String,
    /// Whether this side dialed.
    pub dialed_by_us: bool,
    /// The largest transaction accepted (decompressed).
    pub max_body: usize,
    /// Send a ping after this long without writing.
    pub ping_after: Duration,
    /// Close after this long without reading.
    pub dead_after: Duration,
    /// Sessions mode: hang up after this long with nothing but pings.
    pub idle_hangup: Option<Duration>,
    /// The handshake's round trip: the line's, until the flow control measures one.
    pub rtt: Duration,
    /// Whether the peer already proved it holds the session's keys (a full
    /// handshake); a call this side resumed learns it from the peer's first message.
    pub confirmed: bool,
}

struct Outgoing {
    seq: u64,
    txn_id: String,
    body: String,
    /// The sender replaces it when something newer is due (it may go `lazy`).
    replaced: bool,
    done: oneshot::Sender<Result<Acked, String>>,
}

struct Pending {
    class: Class,
    sent_at: Instant,
    /// It went `lazy`.
    lazy: bool,
    done: oneshot::Sender<Result<Acked, String>>,
    /// Bytes sent on the connection once the message with its last chunk was
    /// written: what its ack says the far side received.
    end: Option<u64>,
}

struct Shared {
    next_seq: u64,
    queues: [VecDeque<Outgoing>; 3],
    pending: HashMap<u64, Pending>,
    control: Vec<Frame<'static>>,
    report_due: bool,
    /// Acks of `lazy` transactions, and whether a flow report is owed for messages
    /// that carried only those: they ride the next message that goes anyway.
    lazy_control: Vec<Frame<'static>>,
    report_owed: bool,
    received_total: u64,
    /// Per transaction received whole, `received_total` when its last chunk came: an
    /// ack (or nack) of it reports that much, so a `Received` of the same total is
    /// left out of the ack's message.
    implied: HashMap<u64, u64>,
    /// Transactions whose last chunk is in the message being written.
    finished: Vec<u64>,
    flow: Flow,
    /// Last data sent or received, or a delivery queued.
    last_activity: Instant,
    /// Transactions being applied here.
    applying: usize,
    /// Messages in the writer's hands, not yet fully written.
    writing: usize,
    /// A message of the peer's is partly received (more chunks are coming).
    receiving: bool,
    /// Senders about to use this call ([`Conn::busy`]).
    busy: usize,
    /// Sessions: when this side said `Bye`, with no data either way since, and
    /// whether it said it first (not in answer to the peer's).
    bye_out: Option<(Instant, bool)>,
    /// The peer said `Bye`, with no data either way since.
    bye_in: bool,
}

/// One established connection.
pub struct Conn {
    params: ConnParams,
    opened: Instant,
    shared: Mutex<Shared>,
    wake: Notify,
    closed: watch::Sender<bool>,
    /// [`ConnParams::confirmed`], or a message of the peer's decrypted since.
    confirmed: Arc<std::sync::atomic::AtomicBool>,
    stats: Arc<LinkStats>,
    budget: Arc<Budget>,
    /// Where received transactions go; also says when presence is due.
    inbound: Arc<dyn Inbound>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.params.peer)
            .field("dialed_by_us", &self.params.dialed_by_us)
            .finish()
    }
}

impl Conn {
    /// Run a connection over `stream` with the session `cipher`. `first` is the
    /// initiator's first message, already decrypted by the responder's handshake.
    pub fn start(
        stream: TcpStream,
        cipher: Cipher,
        params: ConnParams,
        inbound: Arc<dyn Inbound>,
        stats: Arc<LinkStats>,
        budget: Arc<Budget>,
        first: Option<(Vec<u8>, u64)>,
    ) -> Arc<Conn> {
        let now = Instant::now();
        let flow = Flow::new(now, params.rtt);
        let (closed, _) = watch::channel(false);
        let conn = Arc::new(Conn {
            confirmed: Arc::new(std::sync::atomic::AtomicBool::new(params.confirmed)),
            params,
            opened: now,
            shared: Mutex::new(Shared {
                next_seq: 0,
                queues: Default::default(),
                pending: HashMap::new(),
                control: Vec::new(),
                report_due: false,
                lazy_control: Vec::new(),
                report_owed: false,
                received_total: 0,
                implied: HashMap::new(),
                finished: Vec::new(),
                flow,
                last_activity: now,
                applying: 0,
                writing: 0,
                receiving: false,
                busy: 0,
                bye_out: None,
                bye_in: false,
            }),
            wake: Notify::new(),
            closed,
            stats,
            budget,
            inbound: Arc::clone(&inbound),
        });
        let cipher = Arc::new(cipher);
        let (read, write) = stream.into_split();
        let mut reader = tokio::spawn(Arc::clone(&conn).read_loop(read, Arc::clone(&cipher), inbound, first));
        let mut writer = tokio::spawn(Arc::clone(&conn).write_loop(write, cipher));
        let me = Arc::clone(&conn);
        tokio::spawn(async move {
            let mut closed = me.closed.subscribe();
            let why = tokio::select! {
                r = &mut reader => r.ok().and_then(|r| r.err()).unwrap_or_else(|| "reader ended".into()),
                w = &mut writer => w.ok().and_then(|r| r.err()).unwrap_or_else(|| "writer ended".into()),
                _ = closed.wait_for(|c| *c) => "closed here".to_owned(),
            };
            reader.abort();
            writer.abort();
            me.closed.send_replace(true);
            let mut shared = me.lock();
            for q in &mut shared.queues {
                q.clear();
            }
            shared.pending.clear();
            drop(shared);
            let ms = me.opened.elapsed().as_millis() as u64;
            LinkStats::add(&me.stats.connected_ms, ms);
            tracing::info!(peer = %me.params.peer, reason = %why, connected_ms = ms, "link connection ended");
        });
        conn
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The peer's server name.
    pub fn peer(&self) -> &str {
        &self.params.peer
    }

    /// Whether this side dialed.
    pub fn dialed_by_us(&self) -> bool {
        self.params.dialed_by_us
    }

    /// When it was established.
    pub fn opened(&self) -> Instant {
        self.opened
    }

    /// Whether the peer proved it holds the session's keys (see [`ConnParams::confirmed`]).
    pub fn confirmed(&self) -> bool {
        self.confirmed.load(Ordering::Relaxed)
    }

    /// The flag behind [`Conn::confirmed`] (a resumed call's ticket follows it).
    pub fn confirmation(&self) -> Arc<std::sync::atomic::AtomicBool> {
        Arc::clone(&self.confirmed)
    }

    /// Whether it still runs.
    pub fn is_open(&self) -> bool {
        !*self.closed.borrow()
    }

    /// Wait until it ends.
    pub async fn ended(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// End it (a hang-up, or the other connection won the tie-break).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The line's rate as the flow control estimates it, in bytes per second.
    pub fn rate(&self) -> f64 {
        self.lock().flow.rate()
    }

    /// The last measured round trip of the line.
    pub fn rtt(&self) -> Option<Duration> {
        self.lock().flow.rtt()
    }

    /// This side said (or answered) `Bye` and nothing voided it: the call is ending.
    pub fn ending(&self) -> bool {
        self.lock().bye_out.is_some()
    }

    /// A sender is about to gather and deliver over this connection: it is not hung
    /// up (sessions) until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.lock().busy += 1;
        Busy(Arc::clone(self))
    }

    /// The line's round trip as this connection knows it best: the flow control's
    /// smallest sample, else the handshake's.
    pub fn line_rtt(&self) -> Duration {
        self.rtt_of(&self.lock())
    }

    /// [`Conn::line_rtt`], under the lock already held.
    fn rtt_of(&self, shared: &Shared) -> Duration {
        shared.flow.min_rtt().unwrap_or(self.params.rtt)
    }

    /// Queue `txn_id` with `body` (a stored transaction) in `class`; the receiver
    /// resolves once the far side committed it, refused it, or the connection ended.
    /// `replaced`: the sender gives it up for a newer one when something newer is due,
    /// so a small presence transaction may go `lazy` (the module's doc).
    pub fn send(
        &self,
        class: Class,
        txn_id: &str,
        body: &str,
        replaced: bool,
    ) -> oneshot::Receiver<Result<Acked, String>> {
        let (done, rx) = oneshot::channel();
        if !self.is_open() {
            let _ = done.send(Err("the link connection ended".into()));
            return rx;
        }
        let mut shared = self.lock();
        let seq = shared.next_seq;
        shared.next_seq += 1;
        shared.last_activity = Instant::now();
        shared.queues[class.index()].push_back(Outgoing {
            seq,
            txn_id: txn_id.to_owned(),
            body: body.to_owned(),
            replaced,
            done,
        });
        drop(shared);
        self.wake.notify_one();
        rx
    }

    async fn read_loop(
        self: Arc<Self>,
        mut read: OwnedReadHalf,
        cipher: Arc<Cipher>,
        inbound: Arc<dyn Inbound>,
        first: Option<(Vec<u8>, u64)>,
    ) -> Result<(), String> {
        let mut rx = Receiving {
            prev: Default::default(),
            partial: Default::default(),
            tables: Default::default(),
            streams: RecvStreams::default(),
            origin: self.params.peer.clone(),
        };
        let mut nonce = 0u64;
        if let Some((plain, wire)) = first {
            nonce = 1;
            self.lock().received_total += wire;
            self.handle(&plain, &mut rx, &inbound)?;
        }
        let mut ct = Vec::new();
        loop {
            let len = match tokio::time::timeout(self.params.dead_after, frame::read_len(&mut read)).await {
                Err(_) => return Err("nothing heard from the peer for too long".into()),
                Ok(Err(e)) => return Err(format!("read: {e}")),
                Ok(Ok(len)) => len,
            };
            ct.resize(len, 0);
            tokio::time::timeout(self.params.dead_after, read.read_exact(&mut ct))
                .await
                .map_err(|_| "timed out inside a message".to_owned())?
                .map_err(|e| format!("read: {e}"))?;
            let wire = (frame::varint_len(len as u64) + len) as u64;
            LinkStats::add(&self.stats.bytes_received, wire);
            self.lock().received_total += wire;
            let plain = cipher.decrypt(nonce, &ct)?;
            nonce += 1;
            self.confirmed.store(true, Ordering::Relaxed);
            inbound.heard(&self.params.peer);
            self.handle(&plain, &mut rx, &inbound)?;
        }
    }

    /// Act on the frames of one message.
    fn handle(self: &Arc<Self>, plain: &[u8], rx: &mut Receiving, inbound: &Arc<dyn Inbound>) -> Result<(), String> {
        let frames = frame::decode_frames(plain).map_err(|e| format!("bad frame: {e}"))?;
        let now = Instant::now();
        let mut data = false;
        // Data that is not `lazy`: its report (and acks) go promptly.
        let mut prompt = false;
        // A chunk that leaves its transaction unfinished: only a report tells the
        // sender it arrived (a finished one's ack implies its receipt).
        let mut unfinished = false;
        let mut wake = false;
        for f in frames {
            match f {
                Frame::Ping => {}
                Frame::End(class) => rx.end(class)?,
                Frame::Bye => {
                    self.lock().bye_in = true;
                    wake = true;
                }
                Frame::Received(total) => {
                    let mut shared = self.lock();
                    shared.flow.reported(total, now);
                    let flow = &shared.flow;
                    tracing::debug!(
                        peer = %self.params.peer,
                        rtt = ?flow.rtt(),
                        min_rtt = ?flow.min_rtt(),
                        window = flow.window(),
                        in_flight = flow.in_flight(),
                        "link flow report"
                    );
                    drop(shared);
                    wake = true;
                }
                Frame::Ack(seq) | Frame::Nack(seq) => {
                    let pending = {
                        let mut shared = self.lock();
                        let pending = shared.pending.remove(&seq);
                        // An ack implies receipt of everything up to its transaction's end.
                        if let Some(end) = pending.as_ref().and_then(|p| p.end) {
                            shared.flow.acked(end);
                        }
                        pending
                    };
                    if let Some(p) = pending {
                        if p.class == Class::Presence && !p.lazy {
                            self.stats.rtt_ms.store(p.sent_at.elapsed().as_millis() as u64, Ordering::Relaxed);
                        }
                        let result = if matches!(f, Frame::Ack(_)) {
                            Ok(Acked { lazily: p.lazy })
                        } else {
                            Err("the peer could not apply the transaction".to_owned())
                        };
                        let _ = p.done.send(result);
                    }
                    wake |= self.params.idle_hangup.is_some();
                }
                Frame::Data { class, seq, encoding, last, lazy, bytes } => {
                    data = true;
                    prompt |= !lazy;
                    unfinished |= !last;
                    let max = self.params.max_body;
                    if let Some((txn_id, edus)) = rx.chunk(class, seq, encoding, last, bytes, max)? {
                        let mut shared = self.lock();
                        let total = shared.received_total;
                        shared.implied.insert(seq, total);
                        drop(shared);
                        self.apply(Arc::clone(inbound), seq, txn_id, edus, lazy);
                    }
                }
            }
        }
        if data {
            let mut shared = self.lock();
            // The peer is not done: a bye either way is void.
            (shared.bye_in, shared.bye_out) = (false, None);
            if prompt && unfinished {
                shared.report_due = true;
                wake = true;
            } else if !prompt {
                shared.report_owed = true;
            }
            // Else every transaction it carried ends here: their acks, after the
            // commit, say it arrived (the sender has nothing more of those lanes to
            // send before them anyway), instead of a report alone before the commit.
            shared.last_activity = now;
            shared.receiving = rx.partial.iter().any(Option::is_some);
        }
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Apply a transaction and queue its ack: a `lazy` one's waits for a message
    /// that goes anyway (a refusal never waits: the sender must send again).
    fn apply(
        self: &Arc<Self>,
        inbound: Arc<dyn Inbound>,
        seq: u64,
        txn_id: String,
        edus: Vec<IncomingEdu>,
        lazy: bool,
    ) {
        self.lock().applying += 1;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let result = inbound.receive(&me.params.peer, txn_id, edus).await;
            let mut shared = me.lock();
            shared.applying -= 1;
            shared.last_activity = Instant::now();
            match result {
                Ok(()) if lazy => {
                    shared.lazy_control.push(Frame::Ack(seq));
                    return;
                }
                Ok(()) => shared.control.push(Frame::Ack(seq)),
                Err(e) => {
                    tracing::warn!(peer = %me.params.peer, error = %e, "a transaction from the link was not applied");
                    shared.control.push(Frame::Nack(seq));
                }
            }
            drop(shared);
            me.wake.notify_one();
        });
    }

    async fn write_loop(self: Arc<Self>, mut write: OwnedWriteHalf, cipher: Arc<Cipher>) -> Result<(), String> {
        let mut tx = Sending {
            prev: Default::default(),
            current: Default::default(),
            tables: Default::default(),
            streams: SendStreams::new(Instant::now()),
            stream_wins: [false; 3],
            nonce: 0,
            last_write: Instant::now(),
            bulk_yield: BulkYield::new(Instant::now()),
        };
        // The initiator speaks first (the responder waits for it as key confirmation).
        let mut must_send = self.params.dialed_by_us;
        let mut out = Vec::new();
        loop {
            let notified = self.wake.notified();
            let (work, report_only) = self.has_work(&tx);
            if work || must_send {
                let rtt = self.line_rtt();
                let per = if report_only && !must_send { REPORT_CORK_PER_RTT } else { CORK_PER_RTT };
                tokio::time::sleep(rtt / per).await;
                let (mut plain, mut by_class, prompt) = self.build(&mut tx)?;
                if plain.is_empty() && must_send {
                    Frame::Ping.encode(&mut plain);
                    by_class[0] = plain.len();
                }
                if !plain.is_empty() {
                    must_send = false;
                    self.write_message(&mut write, &cipher, &mut tx, &plain, by_class, prompt, &mut out).await?;
                    continue;
                }
            }
            match self.hang_up() {
                HangUp::Not => {}
                HangUp::SayBye => {
                    // Whatever waited for a message rides it (lazy acks, ended streams).
                    let (mut plain, mut by_class, prompt) = self.build(&mut tx)?;
                    Frame::Bye.encode(&mut plain);
                    by_class[0] += 1;
                    self.write_message(&mut write, &cipher, &mut tx, &plain, by_class, prompt, &mut out).await?;
                    continue;
                }
                HangUp::Now(why) => return Err(why.into()),
            }
            // Never more than one ping per two round trips, however short the watchdog.
            let rtt = self.line_rtt();
            let ping_at = tx.last_write + self.params.ping_after.max(rtt * 2);
            // Sessions: wake exactly when the next step of a hang-up is due (if the line
            // is not quiet then, an ack, an apply or a new delivery wakes the writer).
            let hangup_at = self.params.idle_hangup.map(|idle| self.hang_up_at(idle, rtt));
            // Data the pacing held back goes when the line is about free; bulk that gave
            // way to presence, when the yield ends.
            let paced_until = self.lock().flow.paced_until(Instant::now());
            let resume_at = paced_until.into_iter().chain(tx.bulk_yield.until()).min();
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(resume_at.unwrap_or(ping_at).into()), if resume_at.is_some() => {}
                _ = tokio::time::sleep_until(ping_at.into()) => {
                    if Instant::now() >= ping_at {
                        // What waited for a message that goes anyway (lazy acks, an
                        // owed report, ended streams) rides the ping.
                        let (mut plain, mut by_class, prompt) = self.build(&mut tx)?;
                        Frame::Ping.encode(&mut plain);
                        by_class[0] += 1;
                        self.write_message(&mut write, &cipher, &mut tx, &plain, by_class, prompt, &mut out).await?;
                    }
                }
                _ = tokio::time::sleep_until(hangup_at.unwrap_or(ping_at).into()),
                    if hangup_at.is_some_and(|at| at > Instant::now()) => {}
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn write_message(
        &self,
        write: &mut OwnedWriteHalf,
        cipher: &Cipher,
        tx: &mut Sending,
        plain: &[u8],
        by_class: [usize; 4],
        prompt: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        // Only data the far side reports promptly counts in flight (`prompt`): a
        // message of `lazy` data alone is reported whenever a message goes back anyway.
        let ct = cipher.encrypt(tx.nonce, plain)?;
        tx.nonce += 1;
        out.clear();
        frame::put_message(out, &ct);
        write.write_all(out).await.map_err(|e| format!("write: {e}"))?;
        let now = Instant::now();
        tx.last_write = now;
        let mut shared = self.lock();
        shared.flow.wrote(out.len(), now, prompt);
        let end = shared.flow.sent();
        for seq in std::mem::take(&mut shared.finished) {
            if let Some(p) = shared.pending.get_mut(&seq) {
                p.end = Some(end);
            }
        }
        drop(shared);
        // The message's own bytes (length prefix, tag) go to its most urgent class.
        let framing = out.len() - plain.len();
        let first = Class::ALL.into_iter().find(|c| by_class[c.index() + 1] > 0);
        self.stats.sent(first, framing as u64);
        self.stats.sent(None, by_class[0] as u64);
        for class in Class::ALL {
            self.stats.sent(Some(class), by_class[class.index() + 1] as u64);
        }
        self.budget.spend(out.len() as u64);
        tracing::trace!(peer = %self.params.peer, bytes = out.len(), ?by_class, "link message written");
        Ok(())
    }

    /// End the brotli streams of the classes that went idle: nothing of the class
    /// written for as long as a ping waits (`ping_after`, at least two round trips),
    /// nothing of it queued or half-sent. Both ends drop their context: the `End`
    /// frame rides the message being built, which goes anyway (data of another
    /// class, an ack, a flow report, or the ping itself), so the rule costs a byte and
    /// never a message of its own, and an idle link holds no context after at most
    /// two ping periods.
    fn end_idle_streams(&self, shared: &Shared, tx: &mut Sending, plain: &mut Vec<u8>) {
        let rtt = self.rtt_of(shared);
        let idle = self.params.ping_after.max(rtt * 2);
        let busy = |c: Class| tx.current[c.index()].is_some() || !shared.queues[c.index()].is_empty();
        tx.streams.end_idle(Instant::now(), idle, busy, plain);
    }

    /// The per-message choice for a message taken whole: its encoding and body.
    ///
    /// A message enters the class's brotli stream exactly when it goes `Brotli`, so
    /// both ends agree on what the stream holds whatever is chosen. But brotli cannot
    /// be rolled back, nor asked what a message would cost without taking it in, so a
    /// message goes into the stream only once that is decided:
    ///
    /// - bulk (feed JSON, which brotli always shrinks) always goes into it;
    /// - presence and short messages are also written in the compact form; one of
    ///   at most [`SMALL_COMPACT`] bytes goes so; larger ones are
    ///   compressed alone (a fresh stream, thrown away), which bounds what the stream
    ///   would give. The smallest of compact, JSON and brotli alone decides; brotli
    ///   means the stream. Once the stream has taken a message, the next one goes into
    ///   it too as long as the last one it took came out smaller than its compact form
    ///   would have been (a warm stream can beat the compact form where messages
    ///   repeat text the tables do not hold, such as new status messages).
    ///
    /// The compact tables take in every such message, whichever form it went in (the
    /// receiver learns those sent otherwise, [`compact::learn`]): a user first seen in
    /// a large batch, where the stream won, costs one byte in the next lone change.
    fn choose(
        &self,
        class: Class,
        edus: &serde_json::Value,
        raw: &[u8],
        tx: &mut Sending,
    ) -> Result<(Encoding, Vec<u8>), String> {
        let i = class.index();
        let into_stream = |tx: &mut Sending| tx.streams.compress(class, raw).map_err(|e| format!("compress: {e}"));
        if class == Class::Bulk {
            return Ok((Encoding::Brotli, into_stream(tx)?));
        }
        let mut short = Vec::new();
        compact::encode(edus, &self.params.me, &mut tx.tables[i], &mut short);
        if short.len() <= SMALL_COMPACT {
            return Ok((Encoding::Compact, short));
        }
        if !(tx.streams.live(class) && tx.stream_wins[i]) {
            let mut enc = Encoder::new(class);
            let mut alone = enc.compress(raw).map_err(|e| format!("compress: {e}"))?;
            alone.extend(enc.finish());
            if short.len() <= alone.len() && short.len() <= raw.len() {
                return Ok((Encoding::Compact, short));
            }
            if raw.len() <= alone.len() {
                return Ok((Encoding::Json, raw.to_vec()));
            }
        }
        let packed = into_stream(tx)?;
        tx.stream_wins[i] = packed.len() < short.len();
        Ok((Encoding::Brotli, packed))
    }

    /// Whether anything waits to be written, and whether that is only a flow report.
    fn has_work(&self, tx: &Sending) -> (bool, bool) {
        let shared = self.lock();
        let bulk_ok = !self.budget.exhausted();
        let data = Class::ALL.iter().any(|c| {
            (*c != Class::Bulk || bulk_ok) && (tx.current[c.index()].is_some() || !shared.queues[c.index()].is_empty())
        });
        let control = !shared.control.is_empty();
        (data || control || shared.report_due, !data && !control && shared.report_due)
    }

    /// Sessions: the next step of hanging up. A call ends when both ends said `Bye`
    /// with no data either way since: the side that said it first closes on the
    /// answer (the other sees the close), so a transaction one side queued as the
    /// other went quiet is never cut by the hang-up (its data voids both byes). This
    /// side says it first once the line was quiet for `idle_hangup` less a round
    /// trip (so the call still ends about `idle_hangup` after its last activity), and
    /// answers the peer's as soon as it is quiet itself. A bye not answered within
    /// four round trips (at least `idle_hangup`) hangs up alone.
    fn hang_up(&self) -> HangUp {
        let Some(idle) = self.params.idle_hangup else { return HangUp::Not };
        let mut shared = self.lock();
        if !Self::quiet(&shared) {
            return HangUp::Not;
        }
        let rtt = self.rtt_of(&shared);
        match shared.bye_out {
            Some((_, true)) if shared.bye_in => HangUp::Now("hung up: both ends said bye"),
            Some((at, _)) if at.elapsed() >= idle.max(rtt * 4) => HangUp::Now("hung up: the peer did not answer bye"),
            Some(_) => HangUp::Not,
            None if shared.bye_in => {
                shared.bye_out = Some((Instant::now(), false));
                HangUp::SayBye
            }
            None if shared.last_activity.elapsed() >= idle.saturating_sub(rtt) => {
                shared.bye_out = Some((Instant::now(), true));
                HangUp::SayBye
            }
            None => HangUp::Not,
        }
    }

    /// This side answered the peer's `Bye`: the peer closes as the answer arrives, so
    /// data written now would be cut. What comes meanwhile waits for the next call
    /// (its delivery fails as the call ends, and rides the next one).
    fn answered_bye(shared: &Shared) -> bool {
        matches!(shared.bye_out, Some((_, false))) && shared.bye_in
    }

    /// When [`Conn::hang_up`]'s next step is due, if the line stays quiet.
    fn hang_up_at(&self, idle: Duration, rtt: Duration) -> Instant {
        let shared = self.lock();
        match shared.bye_out {
            Some((at, _)) => at + idle.max(rtt * 4),
            None => shared.last_activity + idle.saturating_sub(rtt),
        }
    }

    /// Nothing under way either way. Never in the middle of the peer's message, nor
    /// owing it a flow report (its window may be waiting for it): on a slow line the
    /// gap between two chunks can be longer than `idle_hangup_ms`. Nor while a sender
    /// is about to use the call ([`Conn::busy`]).
    fn quiet(shared: &Shared) -> bool {
        shared.pending.is_empty()
            && shared.busy == 0
            && shared.applying == 0
            && shared.writing == 0
            && !shared.receiving
            && !shared.report_due
            && !shared.report_owed
            && shared.queues.iter().all(|q| q.is_empty())
            && shared.control.is_empty()
            && shared.lazy_control.is_empty()
    }

    /// The plaintext of the next message: control first (with what waited for a
    /// message to ride), then classes in priority, within the flow window and the
    /// message budget; how many of its bytes are control and each class's
    /// (`[control, presence, short, bulk]`); and whether it holds data the far side
    /// reports promptly (data not `lazy`).
    fn build(&self, tx: &mut Sending) -> Result<(Vec<u8>, [usize; 4], bool), String> {
        let bulk_waits = {
            let shared = self.lock();
            tx.current[Class::Bulk.index()].is_some() || !shared.queues[Class::Bulk.index()].is_empty()
        };
        // Core is asked outside this connection's lock: none of core's is taken under it.
        let bulk_gives_way =
            bulk_waits && tx.bulk_yield.holds(Instant::now(), self.inbound.presence_due(&self.params.peer)).is_some();
        let mut shared = self.lock();
        let mut plain = Vec::new();
        let mut implied = 0;
        let mut control = std::mem::take(&mut shared.control);
        control.append(&mut shared.lazy_control);
        for f in control {
            if let Frame::Ack(seq) | Frame::Nack(seq) = f {
                implied = implied.max(shared.implied.remove(&seq).unwrap_or(0));
            }
            f.encode(&mut plain);
        }
        if shared.report_due || shared.report_owed {
            shared.report_due = false;
            shared.report_owed = false;
            // Unless an ack in this message already says as much.
            if implied != shared.received_total {
                Frame::Received(shared.received_total).encode(&mut plain);
            }
        }
        self.end_idle_streams(&shared, tx, &mut plain);
        let overhead = TAG_LEN + 3;
        let budget = shared.flow.message_budget().min(MAX_PLAINTEXT);
        let room_now = |shared: &mut Shared, n: usize| shared.flow.may_send(n + overhead, Instant::now());
        let bulk_ok = !self.budget.exhausted();
        let answered_bye = Self::answered_bye(&shared);
        let control_len = plain.len();
        let mut by_class = [control_len, 0, 0, 0];
        let mut prompt = false;
        for class in Class::ALL {
            if (class == Class::Bulk && (!bulk_ok || bulk_gives_way)) || answered_bye {
                continue;
            }
            let i = class.index();
            let class_start = plain.len();
            loop {
                // Presence is small and never waits for the window: strict priority. Nor
                // is it cut to the message budget (that bounds what presence waits
                // behind), up to [`PRESENCE_MESSAGES`] of it: each cut costs a tag.
                let cap = if class == Class::Presence { budget * PRESENCE_MESSAGES } else { budget };
                let room = cap.min(MAX_PLAINTEXT).saturating_sub(plain.len());
                if room < 16 || (class != Class::Presence && !room_now(&mut shared, plain.len() + 16)) {
                    break;
                }
                if tx.current[i].is_none() {
                    let Some(next) = shared.queues[i].pop_front() else { break };
                    if next.done.is_closed() {
                        // Nobody waits for it: the sender gave it up for a newer
                        // transaction that carries what it did. Not yet on the line,
                        // it costs nothing to drop.
                        continue;
                    }
                    let encoded = txn::edus_value(&next.body)
                        .and_then(|v| serde_json::to_vec(&v).map(|raw| (v, raw)).map_err(|e| e.to_string()));
                    let (edus, raw, header) = match encoded {
                        Ok((edus, raw)) => {
                            let mut header = Vec::new();
                            txn::encode_header(&next.txn_id, &mut tx.prev[i], &mut header);
                            (edus, raw, header)
                        }
                        Err(e) => {
                            let _ = next.done.send(Err(e));
                            continue;
                        }
                    };
                    let mut cur = Current {
                        seq: next.seq,
                        encoding: Encoding::Brotli,
                        lazy: false,
                        buf: header,
                        raw,
                        raw_off: 0,
                    };
                    if cur.raw.len() <= if class == Class::Bulk { WHOLE } else { WHOLE_SHORT } {
                        let (encoding, body) = self.choose(class, &edus, &cur.raw, tx)?;
                        cur.encoding = encoding;
                        cur.lazy = next.replaced && class == Class::Presence && body.len() <= LAZY_BODY;
                        cur.buf.extend(body);
                        cur.raw_off = cur.raw.len();
                    }
                    // Otherwise compressed into the stream piece by piece as it leaves.
                    let pending =
                        Pending { class, sent_at: Instant::now(), lazy: cur.lazy, done: next.done, end: None };
                    shared.pending.insert(next.seq, pending);
                    shared.writing += 1;
                    tx.current[i] = Some(cur);
                }
                let Some(cur) = tx.current[i].as_mut() else { break };
                let want = room.saturating_sub(Frame::data_overhead(cur.seq, room));
                while cur.buf.len() < want && cur.raw_off < cur.raw.len() {
                    let end = (cur.raw_off + PIECE).min(cur.raw.len());
                    let piece =
                        tx.streams.compress(class, &cur.raw[cur.raw_off..end]).map_err(|e| format!("compress: {e}"))?;
                    cur.buf.extend_from_slice(&piece);
                    cur.raw_off = end;
                }
                let take = want.min(cur.buf.len());
                let last = cur.raw_off == cur.raw.len() && take == cur.buf.len();
                if take == 0 && !last {
                    break;
                }
                let lazy = cur.lazy;
                prompt |= !lazy;
                // This side is not done: a bye either way is void.
                (shared.bye_in, shared.bye_out) = (false, None);
                Frame::Data { class, seq: cur.seq, encoding: cur.encoding, last, lazy, bytes: &cur.buf[..take] }
                    .encode(&mut plain);
                cur.buf.drain(..take);
                tx.streams.wrote(class, Instant::now());
                if last {
                    let seq = cur.seq;
                    tx.current[i] = None;
                    shared.writing -= 1;
                    shared.finished.push(seq);
                } else {
                    break;
                }
            }
            by_class[i + 1] = plain.len() - class_start;
        }
        if by_class[Class::Presence.index() + 1] + by_class[Class::Short.index() + 1] > 0 {
            tx.bulk_yield.presence_written(Instant::now());
        }
        Ok((plain, by_class, prompt))
    }
}

/// What the writer does about hanging up ([`Conn::hang_up`]).
enum HangUp {
    /// Nothing now.
    Not,
    /// Write a `Bye`.
    SayBye,
    /// Close, for this reason.
    Now(&'static str),
}

/// [`Conn::busy`]'s guard.
#[derive(Debug)]
pub struct Busy(Arc<Conn>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.lock().busy -= 1;
        // The writer may have been waiting for this to hang up.
        self.0.wake.notify_one();
    }
}

/// The writer's own state.
struct Sending {
    prev: [txn::Previous; 3],
    current: [Option<Current>; 3],
    /// The compact encoding's tables, per class.
    tables: [compact::Table; 3],
    /// The brotli stream of each class, while it lives: made by the first message
    /// that needs it, ended when the class was idle ([`Conn::end_idle_streams`]).
    streams: SendStreams,
    /// Whether the last message each stream took came out smaller than its compact
    /// form ([`Conn::choose`]).
    stream_wins: [bool; 3],
    nonce: u64,
    last_write: Instant,
    /// Bulk giving way to a presence batch about to close.
    bulk_yield: BulkYield,
}

/// A message being written.
struct Current {
    seq: u64,
    /// How its body is written.
    encoding: Encoding,
    /// Its ack may wait for a message that goes anyway (the module's doc).
    lazy: bool,
    /// Encoded bytes not yet written (header, then compressed body).
    buf: Vec<u8>,
    raw: Vec<u8>,
    raw_off: usize,
}

/// The reader's own state.
struct Receiving {
    prev: [txn::Previous; 3],
    partial: [Option<(u64, Vec<u8>)>; 3],
    /// The compact encoding's tables, per class (as the sender's).
    tables: [compact::Table; 3],
    /// The brotli stream of each class (as the sender's: made by the first
    /// compressed message, dropped by an `End` frame or at the stream's finish).
    streams: RecvStreams,
    /// The peer (the compact form's user IDs are its users').
    origin: String,
}

impl Receiving {
    /// A message of `class` that came whole in another form than the compact one: the
    /// sender's table took in its compact encoding ([`Conn::choose`]), so ours does.
    /// Bulk, and messages too large to be chosen whole, were never encoded compact.
    fn learn(&mut self, class: Class, raw_len: usize, value: &serde_json::Value) {
        if class != Class::Bulk && raw_len <= WHOLE_SHORT {
            compact::learn(value, &self.origin, &mut self.tables[class.index()]);
        }
    }

    /// The peer dropped its brotli context of `class`: drop ours. Never inside a
    /// message of the class (its sender ends a stream only between messages).
    fn end(&mut self, class: Class) -> Result<(), String> {
        let i = class.index();
        if self.partial[i].is_some() {
            return Err(format!("the {class:?} stream ended inside a message"));
        }
        self.streams.end(class);
        Ok(())
    }

    /// Add a chunk; a whole transaction when it was the last.
    #[allow(clippy::type_complexity)]
    fn chunk(
        &mut self,
        class: Class,
        seq: u64,
        encoding: Encoding,
        last: bool,
        bytes: &[u8],
        max: usize,
    ) -> Result<Option<(String, Vec<IncomingEdu>)>, String> {
        let i = class.index();
        let slot = self.partial[i].get_or_insert_with(|| (seq, Vec::new()));
        if slot.0 != seq {
            return Err(format!("message {seq} began before message {} of its class ended", slot.0));
        }
        if slot.1.len() + bytes.len() > max {
            return Err("a message larger than the largest transaction".into());
        }
        slot.1.extend_from_slice(bytes);
        if !last {
            return Ok(None);
        }
        let (_, buf) = self.partial[i].take().unwrap_or_default();
        let (txn_id, header_len) = txn::decode_header(&buf, &mut self.prev[i]).map_err(|e| e.to_string())?;
        let body = &buf[header_len..];
        let decompressed;
        let edus = match encoding {
            Encoding::Brotli | Encoding::Json => {
                let raw = if encoding == Encoding::Brotli {
                    decompressed = self.streams.decompress(class, body, max).map_err(|e| format!("decompress: {e}"))?;
                    &decompressed[..]
                } else {
                    body
                };
                let value = serde_json::from_slice(raw).map_err(|e| format!("bad EDUs: {e}"))?;
                self.learn(class, raw.len(), &value);
                txn::decode_value(value)?
            }
            Encoding::Compact => {
                let value = compact::decode(body, &self.origin, &mut self.tables[i], max)
                    .map_err(|e| format!("compact: {e}"))?;
                txn::decode_value(value)?
            }
        };
        Ok(Some((txn_id, edus)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Records what arrives, each transaction committed after `commit` (a database's
    /// time).
    #[derive(Debug, Default)]
    struct Recorder {
        txns: Mutex<Vec<String>>,
        arrived: Notify,
        commit: Duration,
    }

    impl Inbound for Recorder {
        fn heard(&self, _: &str) {}

        fn receive<'a>(&'a self, _: &'a str, txn_id: String, _: Vec<IncomingEdu>) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                tokio::time::sleep(self.commit).await;
                self.txns.lock().unwrap_or_else(|p| p.into_inner()).push(txn_id);
                self.arrived.notify_waiters();
                Ok(())
            })
        }
    }

    impl Recorder {
        async fn wait_for(&self, n: usize) {
            loop {
                let arrived = self.arrived.notified();
                if self.txns.lock().unwrap_or_else(|p| p.into_inner()).len() >= n {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), arrived).await;
            }
        }
    }

    struct Pair {
        a: Arc<Conn>,
        b: Arc<Conn>,
        a_stats: Arc<LinkStats>,
        b_inbound: Arc<Recorder>,
        b_stats: Arc<LinkStats>,
        started: Instant,
    }

    /// `a` dialed `b` over loopback; `b` pings after `ping_after` without writing.
    async fn pair(ping_after: Duration) -> Pair {
        pair_with(ping_after, None, Duration::ZERO).await
    }

    /// [`pair`], both ends hanging up after `idle_hangup` (sessions mode) when set,
    /// `b` committing each transaction after `commit`.
    async fn pair_with(ping_after: Duration, idle_hangup: Option<Duration>, commit: Duration) -> Pair {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let (i2r, r2i) = ([1u8; 32], [2u8; 32]);
        let params = |peer: &str, me: &str, dialed_by_us: bool| ConnParams {
            peer: peer.into(),
            me: me.into(),
            dialed_by_us,
            max_body: 1 << 20,
            ping_after,
            dead_after: Duration::from_secs(120),
            idle_hangup,
            rtt: Duration::from_millis(10),
            confirmed: true,
        };
        let budget = Arc::new(Budget::new(0));
        let b_inbound = Arc::new(Recorder { commit, ..Recorder::default() });
        let b_stats = Arc::new(LinkStats::default());
        let a_stats = Arc::new(LinkStats::default());
        let started = Instant::now();
        let a = Conn::start(
            dialed.expect("connect"),
            Cipher::initiator(&i2r, &r2i),
            params("b.test", "a.test", true),
            Arc::new(Recorder::default()),
            Arc::clone(&a_stats),
            Arc::clone(&budget),
            None,
        );
        let b = Conn::start(
            accepted.expect("accept").0,
            Cipher::responder(&i2r, &r2i),
            params("a.test", "b.test", false),
            Arc::clone(&b_inbound) as Arc<dyn Inbound>,
            Arc::clone(&b_stats),
            budget,
            None,
        );
        Pair { a, b, a_stats, b_inbound, b_stats, started }
    }

    /// A message of nothing but one control frame (`Ping`, `Bye`).
    const LONE_FRAME: u64 = 1 + TAG_LEN as u64 + 1;

    #[tokio::test]
    async fn a_finished_transaction_is_reported_by_its_ack_alone() {
        // The commit takes far longer than a flow report's cork (a tenth of 10 ms).
        let p = pair_with(Duration::from_secs(600), None, Duration::from_millis(200)).await;
        let acked = p.a.send(Class::Short, "1764590000000.00000001", &lone_change(), false);
        assert_eq!(acked.await.expect("answered").expect("acknowledged"), Acked { lazily: false });
        let sent = p.b_stats.bytes_sent.load(Ordering::Relaxed);
        assert!(sent <= ONE_MESSAGE, "b wrote {sent} bytes: a report went alone before the ack");
    }

    #[tokio::test]
    async fn a_quiet_call_ends_by_a_bye_each_way() {
        let p = pair_with(Duration::from_secs(600), Some(Duration::from_millis(300)), Duration::ZERO).await;
        p.a.ended().await;
        p.b.ended().await;
        // a: its first ping and its bye; b: its answer.
        assert_eq!(p.a_stats.bytes_sent.load(Ordering::Relaxed), 2 * LONE_FRAME);
        assert_eq!(p.b_stats.bytes_sent.load(Ordering::Relaxed), LONE_FRAME);
    }

    #[tokio::test]
    async fn a_transaction_sent_as_the_far_side_says_bye_is_not_cut() {
        let p = pair_with(Duration::from_secs(600), Some(Duration::from_millis(400)), Duration::ZERO).await;
        // a is about to send (a sender gathering for the call): it does not hang up.
        let busy = p.a.busy();
        // b went quiet and said bye (its only message).
        let said_bye = async {
            while p.b_stats.bytes_sent.load(Ordering::Relaxed) < LONE_FRAME {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), said_bye).await.expect("b said bye");
        let acked = p.a.send(Class::Short, "1764590000000.00000001", &lone_change(), false);
        drop(busy);
        // Its data voids b's bye: b applies and acknowledges it on the same call.
        assert_eq!(acked.await.expect("answered").expect("acknowledged"), Acked { lazily: false });
        assert_eq!(p.b_inbound.txns.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
        // And then the call ends as a quiet one does.
        p.a.ended().await;
        p.b.ended().await;
    }

    fn body(edu_type: &str, content: serde_json::Value) -> String {
        serde_json::json!({"origin": "a.test", "origin_server_ts": 1, "pdus": [],
            "edus": [{"edu_type": edu_type, "content": content}]})
        .to_string()
    }

    fn lone_change() -> String {
        body("m.presence", serde_json::json!({"push": [{"user_id": "@u:a.test", "presence": "online"}]}))
    }

    /// One message of only control frames is under 18 + 6 bytes; two are 36 or more.
    const ONE_MESSAGE: u64 = 1 + TAG_LEN as u64 + 6;

    #[tokio::test]
    async fn a_lone_replaceable_change_is_acknowledged_by_the_next_ping() {
        let ping_after = Duration::from_millis(800);
        let p = pair(ping_after).await;
        let acked = p.a.send(Class::Presence, "1764590000000.00000001", &lone_change(), true);
        p.b_inbound.wait_for(1).await;
        let acked = acked.await.expect("answered").expect("acknowledged");
        assert_eq!(acked, Acked { lazily: true });
        // b wrote nothing before its ping, and the ping carried the ack and the report.
        assert!(p.started.elapsed() >= ping_after, "acked after {:?}", p.started.elapsed());
        let sent = p.b_stats.bytes_sent.load(Ordering::Relaxed);
        assert!(sent <= ONE_MESSAGE, "b wrote {sent} bytes");
    }

    #[tokio::test]
    async fn a_transaction_given_up_before_it_left_is_not_sent() {
        let p = pair(Duration::from_secs(600)).await;
        // The sender replaced it at once (its receiver dropped) before the writer ran.
        drop(p.a.send(Class::Presence, "1764590000000.00000001", &lone_change(), true));
        let newer = p.a.send(Class::Presence, "1764590000001.00000002", &lone_change(), true);
        p.b_inbound.wait_for(1).await;
        // In order within the class: had the first gone, it would have come first.
        let got = p.b_inbound.txns.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(got, ["1764590000001.00000002"]);
        drop(newer);
    }

    #[tokio::test]
    async fn a_lazy_ack_rides_the_next_message_and_others_go_at_once() {
        let p = pair(Duration::from_secs(600)).await;
        // Not replaced by the sender: acknowledged at once, not lazily.
        let first = p.a.send(Class::Presence, "1764590000000.00000001", &lone_change(), false);
        assert_eq!(first.await.expect("answered").expect("acknowledged"), Acked { lazily: false });
        let after_first = p.b_stats.bytes_sent.load(Ordering::Relaxed);
        assert!(after_first <= ONE_MESSAGE, "b wrote {after_first} bytes");
        // Replaceable and small: its ack waits; a consent EDU's ack goes at once and
        // takes it along, in one message.
        let lazy = p.a.send(Class::Presence, "1764590000001.00000002", &lone_change(), true);
        p.b_inbound.wait_for(2).await;
        let answer = body("tidings.presence_answer", serde_json::json!({"watcher": "@w:b.test", "allow": true}));
        let prompt = p.a.send(Class::Short, "1764590000002.00000003", &answer, false);
        assert_eq!(prompt.await.expect("answered").expect("acknowledged"), Acked { lazily: false });
        assert_eq!(lazy.await.expect("answered").expect("acknowledged"), Acked { lazily: true });
        let second = p.b_stats.bytes_sent.load(Ordering::Relaxed) - after_first;
        assert!(second <= ONE_MESSAGE, "b wrote {second} bytes for both acks");
        // A large replaceable batch is not lazy: resending it would cost more than an ack.
        let pushes: Vec<_> =
            (0..20).map(|i| serde_json::json!({"user_id": format!("@u{i}:a.test"), "presence": "online"})).collect();
        let batch = p.a.send(
            Class::Presence,
            "1764590000003.00000004",
            &body("m.presence", serde_json::json!({"push": pushes})),
            true,
        );
        assert_eq!(batch.await.expect("answered").expect("acknowledged"), Acked { lazily: false });
    }
}
