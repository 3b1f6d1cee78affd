//! [`LinkTransport`]: the [`Transport`] for peers with `link` set, and [`Links`], which
//! keeps one connection per linked peer: it dials (either side may; when both did,
//! the connection dialed by the smaller server name wins), answers through the
//! listener, and hands each delivery to the live connection. A call after the first
//! resumes with the peer's ticket when it has one ([`super::resume`]): one 25-byte
//! message instead of the full handshake. Peers without `link` go to the HTTP
//! transport, unchanged.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tidings_core::exchange::{Exchange, IncomingEdu};
use tidings_core::lanes::Lane;
use tidings_core::outbound::{Outbound, StoredTxn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};

use super::budget::Budget;
use super::config::{LinkConfig, LinkMode};
use super::frame::{self, Class};
use super::key::LinkKey;
use super::noise::{self, Initiator, MSG1_LEN, MSG2_LEN, ReplayGuard};
use super::resume::{self, Hello, RESUME_LEN, Secret, Tickets};
use super::session::{Acked, Conn, ConnParams, Inbound, LinkStats};
use crate::config::{FederationConfig, PeerConfig};
use crate::keyring::Keyring;
use crate::peer::{Peer, PeerStats};
use crate::transport::{BoxFuture, Delivery, Hold, Traffic, Transport};

/// How long a delivery waits for a connection before it fails (and the sender backs off).
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// First and longest waits between dial attempts.
const DIAL_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// In `always` mode, how long the larger name waits for the smaller's call.
const FIRST_DIALER_GRACE: Duration = Duration::from_secs(5);
/// How many recent handshakes the replay guard remembers.
const REPLAY_MEMORY: usize = 4096;

/// How a connection's session was made, which decides what becomes of its ticket.
#[derive(Debug)]
enum Made {
    /// A full handshake with the peer's static key `remote`: its ticket is kept once
    /// the connection becomes the peer's.
    Full { remote: [u8; 32], secret: Secret, rtt: Duration },
    /// This side resumed it: its successor ticket may be dialed once the connection
    /// heard from the peer, and is forgotten otherwise.
    Resumed { next_id: [u8; resume::ID_LEN] },
    /// The peer resumed it (the ticket was replaced as it was accepted).
    Answered,
}

/// One linked peer.
#[derive(Debug)]
pub struct LinkPeer {
    name: String,
    url: String,
    addr: String,
    conn: watch::Sender<Option<Arc<Conn>>>,
    want: Notify,
    /// A delivery waits for a call (sessions); cleared when a connection is up, so a
    /// stale wake-up makes no call.
    wanted: AtomicBool,
    connecting: AtomicBool,
    /// A call from the peer is in its handshake here: do not dial it meanwhile.
    answering: AtomicBool,
    /// Sessions: transactions whose call ended before their ack (a hang-up crossed
    /// them); their next attempt rides the next call instead of calling at once.
    cut: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The line's rate (bytes/s) as the last connection estimated it; 0 before any.
    rate: std::sync::atomic::AtomicU64,
    /// Its figures.
    pub stats: Arc<LinkStats>,
}

impl LinkPeer {
    fn open_conn(&self) -> Option<Arc<Conn>> {
        self.conn.borrow().clone().filter(|c| c.is_open())
    }
}

/// The state of one link, as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    /// `up`, `down` or `connecting`.
    pub state: &'static str,
    /// Bytes written on the line.
    pub bytes_sent: u64,
    /// `bytes_sent` by what it carried: `[control, presence, short, bulk]`
    /// ([`LinkStats::bytes_sent_by_class`]).
    pub bytes_sent_by_class: [u64; 4],
    /// Bytes read from the line.
    pub bytes_received: u64,
    /// The last round trip of a presence transaction to its ack, in ms; while none was
    /// acknowledged promptly (lazy acks), the open connection's line round trip.
    pub rtt_ms: Option<u64>,
    /// Calls made (this side dialed and the handshake completed).
    pub calls: u64,
    /// Time connected, in ms (the open connection included).
    pub connected_ms: u64,
    /// What the connected time cost at `cost_per_minute`, each connection billed in
    /// whole minutes.
    pub cost: f64,
}

/// Applies what arrives over links through core's exchange, and counts it.
#[derive(Debug)]
pub struct LinkInbound {
    /// Core's exchange.
    pub exchange: Arc<Exchange>,
    /// The carrier's peers (for their figures and retry signal).
    pub peers: Arc<HashMap<String, Arc<Peer>>>,
    /// Unix ms, for `last_received_ts`.
    pub clock: tidings_core::clock::SharedClock,
}

impl Inbound for LinkInbound {
    fn calling(&self, peer: &str, up: bool) {
        self.exchange.outbound().calling(peer, up);
    }

    fn presence_due(&self, peer: &str) -> Option<Duration> {
        let outbound = self.exchange.outbound();
        let [presence, short, _] = outbound.waiting().since(peer);
        presence.or(short)?;
        let closes = outbound.window_closes(peer)?;
        Some(Duration::from_millis(closes.saturating_sub(outbound.clock().now_ms())))
    }

    fn heard(&self, peer: &str) {
        self.exchange.heard(peer);
        if let Some(p) = self.peers.get(peer) {
            p.stats.last_received_ts.store(self.clock.now_ms(), Ordering::Relaxed);
            p.heard.notify_waiters();
        }
    }

    fn receive<'a>(
        &'a self,
        peer: &'a str,
        txn_id: String,
        edus: Vec<IncomingEdu>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if let Some(p) = self.peers.get(peer) {
                PeerStats::add(&p.stats.txns_received, 1);
            }
            self.exchange.receive(peer, &txn_id, edus).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }
}

/// Every link of this server.
#[derive(Debug)]
pub struct Links {
    me: String,
    key: Arc<LinkKey>,
    config: LinkConfig,
    keyring: Arc<Keyring>,
    peers: HashMap<String, Arc<LinkPeer>>,
    inbound: Arc<dyn Inbound>,
    budget: Arc<Budget>,
    replay: ReplayGuard,
    tickets: Tickets,
    handshakes: Arc<Semaphore>,
    max_body: usize,
    ping_after: Duration,
}

impl Links {
    /// The links of `me` to the peers of `federation` that have `link` set.
    pub fn new(
        me: &str,
        key: Arc<LinkKey>,
        config: &LinkConfig,
        federation: &FederationConfig,
        keyring: Arc<Keyring>,
        inbound: Arc<dyn Inbound>,
        max_body: usize,
    ) -> Self {
        let (peers, short_watchdog_ms) = (&federation.peers, federation.short_watchdog_ms);
        let peers = peers
            .iter()
            .filter_map(|p| {
                let addr = p.link.clone()?;
                let (conn, _) = watch::channel(None);
                Some((
                    p.server_name.clone(),
                    Arc::new(LinkPeer {
                        name: p.server_name.clone(),
                        url: p.url.clone(),
                        addr,
                        conn,
                        want: Notify::new(),
                        wanted: AtomicBool::new(false),
                        connecting: AtomicBool::new(false),
                        answering: AtomicBool::new(false),
                        cut: Default::default(),
                        rate: Default::default(),
                        stats: Arc::new(LinkStats::default()),
                    }),
                ))
            })
            .collect();
        // Pings keep the peer's short watchdog from expiring: two or more per period
        // (and at most one per two round trips: the connection's floor).
        let ping_after = Duration::from_millis(short_watchdog_ms * 2 / 5);
        let tickets = Tickets::new(*key.public(), config.resume_ms);
        Self {
            me: me.to_owned(),
            key,
            config: config.clone(),
            keyring,
            peers,
            inbound,
            budget: Arc::new(Budget::new(config.daily_budget_bytes)),
            replay: ReplayGuard::new(REPLAY_MEMORY),
            tickets,
            handshakes: Arc::new(Semaphore::new(config.max_pending_handshakes)),
            max_body,
            ping_after,
        }
    }

    /// Whether `peer` is reached over a link.
    pub fn is_linked(&self, peer: &str) -> bool {
        self.peers.contains_key(peer)
    }

    /// Accept on `config.listen` (if set) and keep every link as its mode says, until
    /// the process ends.
    pub async fn run(self: Arc<Self>) {
        if let Some(addr) = self.config.listen {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    tracing::info!(%addr, "link listener up");
                    tokio::spawn(super::listener::run(listener, Arc::clone(&self)));
                }
                Err(e) => tracing::error!(%addr, error = %e, "cannot listen for links (link.listen)"),
            }
        }
        let tasks: Vec<_> =
            self.peers.values().map(|p| tokio::spawn(Arc::clone(&self).maintain(Arc::clone(p)))).collect();
        for t in tasks {
            let _ = t.await;
        }
    }

    /// The admin's view of `peer`'s link.
    pub fn status(&self, peer: &str) -> Option<LinkStatus> {
        let p = self.peers.get(peer)?;
        let s = &p.stats;
        let open = p.open_conn();
        let current_ms = open.as_ref().map_or(0, |c| c.opened().elapsed().as_millis() as u64);
        let connected_ms = s.connected_ms.load(Ordering::Relaxed) + current_ms;
        let billed = s.billed_minutes.load(Ordering::Relaxed) + current_ms.div_ceil(60_000);
        let rtt = s.rtt_ms.load(Ordering::Relaxed);
        Some(LinkStatus {
            state: if open.is_some() {
                "up"
            } else if p.connecting.load(Ordering::Relaxed) {
                "connecting"
            } else {
                "down"
            },
            bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
            bytes_sent_by_class: s.sent_by_class(),
            bytes_received: s.bytes_received.load(Ordering::Relaxed),
            // Lazy acks are no round trip: until a prompt one, the line's own.
            rtt_ms: (rtt > 0).then_some(rtt).or_else(|| open.as_ref().map(|c| c.line_rtt().as_millis() as u64)),
            calls: s.calls.load(Ordering::Relaxed),
            connected_ms,
            cost: billed as f64 * self.config.cost_per_minute,
        })
    }

    fn params(&self, peer: &str, dialed_by_us: bool, rtt: Duration, confirmed: bool) -> ConnParams {
        ConnParams {
            peer: peer.to_owned(),
            me: self.me.clone(),
            dialed_by_us,
            max_body: self.max_body,
            ping_after: self.ping_after,
            dead_after: self.ping_after * 5 / 2 + Duration::from_secs(5),
            idle_hangup: (self.config.mode == LinkMode::Sessions)
                .then(|| Duration::from_millis(self.config.idle_hangup_ms)),
            rtt,
            confirmed,
        }
    }

    /// Keep one peer's link: in `always` mode up at all times, in `sessions` mode
    /// when a delivery asks for it.
    async fn maintain(self: Arc<Self>, peer: Arc<LinkPeer>) {
        tokio::spawn(Arc::clone(&self).learn_key(Arc::clone(&peer)));
        let mut backoff = DIAL_BACKOFF.0;
        let mut changes = peer.conn.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(conn) = peer.open_conn() {
                conn.ended().await;
                continue;
            }
            match self.config.mode {
                LinkMode::Sessions => {
                    peer.want.notified().await;
                    if !peer.wanted.swap(false, Ordering::SeqCst) {
                        continue;
                    }
                }
                LinkMode::Always if self.me > peer.name => {
                    // The smaller name dials first; give its call time to get through
                    // (a handshake and its confirmation take about 3.6 s on a 1 s line).
                    // Wait for a connection that is up, not for any change: the old
                    // one's removal is a change too, and answering it at once crossed
                    // the smaller name's call (two resumed calls that cross both fail).
                    let up = changes.wait_for(|c| c.as_ref().is_some_and(|c| c.is_open()));
                    let _ = tokio::time::timeout(FIRST_DIALER_GRACE, up).await;
                }
                LinkMode::Always => {}
            }
            if peer.open_conn().is_some() {
                continue;
            }
            if peer.answering.load(Ordering::SeqCst) {
                let _ =
                    tokio::time::timeout(Duration::from_millis(self.config.handshake_timeout_ms), changes.changed())
                        .await;
                continue;
            }
            peer.connecting.store(true, Ordering::Relaxed);
            let dialed = self.dial(&peer).await;
            peer.connecting.store(false, Ordering::Relaxed);
            match dialed {
                Ok((conn, made)) => {
                    backoff = DIAL_BACKOFF.0;
                    peer.stats.calls.fetch_add(1, Ordering::Relaxed);
                    self.install(&peer, conn, made);
                }
                Err(e) => {
                    tracing::warn!(peer = %peer.name, addr = %peer.addr, error = %e, retry_in_ms = backoff.as_millis() as u64, "link call failed");
                    let _ = tokio::time::timeout(backoff, changes.changed()).await;
                    backoff = (backoff * 2).min(DIAL_BACKOFF.1);
                }
            }
        }
    }

    /// Learn the peer's link key (so its calls can be answered) before anything is
    /// sent, retrying with backoff until its key document answers, and again before
    /// the cached document expires. Nothing to learn when the configuration pins it.
    async fn learn_key(self: Arc<Self>, peer: Arc<LinkPeer>) {
        if self.keyring.pinned_link_key(&peer.name).is_some() {
            // The configuration gave it (`link_key`): the peer's url is never asked.
            return;
        }
        let mut backoff = DIAL_BACKOFF.0;
        loop {
            if self.keyring.cached_link_key(&peer.name).is_some() {
                backoff = DIAL_BACKOFF.0;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                continue;
            }
            if let Err(e) = self.keyring.fetch_link_key(&peer.name, &peer.url).await {
                tracing::debug!(peer = %peer.name, error = %e, "cannot learn the peer's link key yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(DIAL_BACKOFF.1);
            }
        }
    }

    /// Call the peer: resume with its ticket when there is one that may be dialed
    /// (the resume message, then at once the first encrypted message), else a full
    /// handshake.
    async fn dial(&self, peer: &LinkPeer) -> Result<(Arc<Conn>, Made), String> {
        let remote = match self.keyring.cached_link_key(&peer.name) {
            Some(k) => k,
            None => self.keyring.fetch_link_key(&peer.name, &peer.url).await?,
        };
        let timeout = Duration::from_millis(self.config.handshake_timeout_ms);
        let result = tokio::time::timeout(timeout, async {
            let mut stream = TcpStream::connect(&peer.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            // Taken only once the call is through: a failed connect uses no ticket.
            if let Some(resumed) = self.tickets.resume(&peer.name, &remote, Instant::now()) {
                let next_id = resumed.next_id;
                if let Err(e) = stream.write_all(&resumed.message).await {
                    self.tickets.settle(&peer.name, next_id, false);
                    return Err(format!("write: {e}"));
                }
                peer.stats.sent(None, RESUME_LEN as u64);
                return Ok::<_, String>((stream, resumed.cipher, resumed.rtt, Made::Resumed { next_id }));
            }
            let (init, msg1) = Initiator::start(&self.key, &remote)?;
            stream.write_all(&msg1).await.map_err(|e| format!("write: {e}"))?;
            let sent = Instant::now();
            peer.stats.sent(None, MSG1_LEN as u64);
            let mut msg2 = [0u8; MSG2_LEN];
            stream.read_exact(&mut msg2).await.map_err(|e| format!("no handshake answer: {e}"))?;
            let rtt = sent.elapsed();
            peer.stats.bytes_received.fetch_add(MSG2_LEN as u64, Ordering::Relaxed);
            let (cipher, secret) = init.finish(&msg2)?;
            Ok((stream, cipher, rtt, Made::Full { remote, secret, rtt }))
        })
        .await
        .map_err(|_| "the handshake timed out".to_owned())?;
        let (stream, cipher, rtt, made) = match result {
            Ok(ok) => ok,
            Err(e) => {
                if e.starts_with("handshake refused") {
                    // Perhaps the peer has a new link key: learn it for the next call.
                    let _ = self.keyring.fetch_link_key(&peer.name, &peer.url).await;
                }
                return Err(e);
            }
        };
        let confirmed = !matches!(made, Made::Resumed { .. });
        let conn = Conn::start(
            stream,
            cipher,
            self.params(&peer.name, true, rtt, confirmed),
            Arc::clone(&self.inbound),
            Arc::clone(&peer.stats),
            Arc::clone(&self.budget),
            None,
        );
        if let Made::Resumed { next_id } = made {
            // The successor may open the next call once this one heard the peer.
            self.tickets.confirm_by(&peer.name, next_id, conn.confirmation());
        }
        Ok((conn, made))
    }

    /// Answer one incoming connection: a full handshake or a resume message, then the
    /// initiator's first encrypted message (key confirmation); only then does it count.
    pub(super) async fn answer(&self, mut stream: TcpStream) -> Result<(), String> {
        let _ = stream.set_nodelay(true);
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.map_err(|e| format!("short handshake: {e}"))?;
        let (peer, cipher, msg2, ticket_rtt, made) = match Hello::of(first[0]) {
            None => return Err("not a link handshake".into()),
            Some(Hello::Resume) => {
                let mut msg = [0u8; RESUME_LEN];
                msg[0] = first[0];
                stream.read_exact(&mut msg[1..]).await.map_err(|e| format!("short resume message: {e}"))?;
                let accepted = self
                    .tickets
                    .accept(&msg, |name| self.keyring.cached_link_key(name), Instant::now())
                    .ok_or("no ticket opens this resume message (unknown, used, expired or forged)")?;
                let peer = Arc::clone(self.peers.get(&accepted.peer).ok_or("a ticket of no linked peer")?);
                peer.stats.bytes_received.fetch_add(RESUME_LEN as u64, Ordering::Relaxed);
                (peer, accepted.cipher, None, accepted.rtt, Made::Answered)
            }
            Some(Hello::Full) => {
                let mut msg1 = [0u8; MSG1_LEN];
                msg1[0] = first[0];
                stream.read_exact(&mut msg1[1..]).await.map_err(|e| format!("short handshake: {e}"))?;
                if !self.replay.fresh(&msg1) {
                    return Err("a replayed handshake".into());
                }
                let candidates: Vec<(Arc<LinkPeer>, [u8; 32])> = self
                    .peers
                    .values()
                    .filter_map(|p| self.keyring.cached_link_key(&p.name).map(|k| (Arc::clone(p), k)))
                    .collect();
                let keys: Vec<[u8; 32]> = candidates.iter().map(|(_, k)| *k).collect();
                let (i, cipher, msg2, secret) = noise::respond(&self.key, &keys, &msg1)?;
                let (peer, remote) = (Arc::clone(&candidates[i].0), candidates[i].1);
                peer.stats.bytes_received.fetch_add(MSG1_LEN as u64, Ordering::Relaxed);
                (peer, cipher, Some(msg2), Duration::ZERO, Made::Full { remote, secret, rtt: Duration::ZERO })
            }
        };
        peer.answering.store(true, Ordering::SeqCst);
        let confirmed = async {
            let sent = Instant::now();
            if let Some(msg2) = msg2 {
                stream.write_all(&msg2).await.map_err(|e| format!("write: {e}"))?;
                peer.stats.sent(None, MSG2_LEN as u64);
            }
            let len = frame::read_len(&mut stream).await.map_err(|e| format!("no first message: {e}"))?;
            // Its first message waits one cork (a hundredth of this) before it leaves;
            // a resumed call has no round trip to time: its ticket remembers one.
            let rtt = if msg2.is_some() { sent.elapsed() } else { ticket_rtt };
            let mut ct = vec![0u8; len];
            stream.read_exact(&mut ct).await.map_err(|e| format!("no first message: {e}"))?;
            let wire = (frame::varint_len(len as u64) + len) as u64;
            peer.stats.bytes_received.fetch_add(wire, Ordering::Relaxed);
            let plain = cipher.decrypt(0, &ct).map_err(|e| format!("first message: {e}"))?;
            Ok::<_, String>((plain, wire, rtt))
        }
        .await;
        peer.answering.store(false, Ordering::SeqCst);
        let (plain, wire, rtt) = confirmed?;
        let made = match made {
            Made::Full { remote, secret, .. } => Made::Full { remote, secret, rtt },
            other => other,
        };
        self.inbound.heard(&peer.name);
        let conn = Conn::start(
            stream,
            cipher,
            self.params(&peer.name, false, rtt, true),
            Arc::clone(&self.inbound),
            Arc::clone(&peer.stats),
            Arc::clone(&self.budget),
            Some((plain, wire)),
        );
        self.install(&peer, conn, made);
        Ok(())
    }

    /// Make `conn` the peer's connection, unless the tie-break keeps the current one:
    /// a new connection dialed the same way replaces the old (its dialer saw the old
    /// one die); of two dialed opposite ways, the one the smaller name dialed wins.
    /// Both ends keep the same connection, so the ticket of a full handshake is kept
    /// only when its connection is: then both ends hold the same one.
    fn install(&self, peer: &Arc<LinkPeer>, conn: Arc<Conn>, made: Made) {
        if let Some(old) = peer.open_conn() {
            let keep_new = old.dialed_by_us() == conn.dialed_by_us() || {
                let new_dialer = if conn.dialed_by_us() { &self.me } else { &peer.name };
                let other = if conn.dialed_by_us() { &peer.name } else { &self.me };
                new_dialer < other
            };
            if !keep_new {
                tracing::debug!(peer = %peer.name, "both sides dialed; keeping the other connection");
                conn.close();
                if let Made::Resumed { next_id } = made {
                    self.tickets.settle(&peer.name, next_id, false);
                }
                return;
            }
            old.close();
        }
        let resumed = !matches!(made, Made::Full { .. });
        if let Made::Full { remote, secret, rtt } = made {
            self.tickets.store(&peer.name, remote, secret, rtt, Instant::now());
        }
        tracing::info!(
            peer = %peer.name,
            dialed_by_us = conn.dialed_by_us(),
            resumed,
            "link up"
        );
        peer.wanted.store(false, Ordering::SeqCst);
        peer.conn.send_replace(Some(Arc::clone(&conn)));
        let sessions = self.config.mode == LinkMode::Sessions;
        if sessions {
            // A call is paid for: everything that waits for the peer goes now.
            self.inbound.calling(&peer.name, true);
        }
        let (peer, stats, inbound) = (Arc::clone(peer), Arc::clone(&peer.stats), Arc::clone(&self.inbound));
        tokio::spawn(async move {
            conn.ended().await;
            if sessions && peer.open_conn().is_none() {
                inbound.calling(&peer.name, false);
            }
            stats
                .billed_minutes
                .fetch_add((conn.opened().elapsed().as_millis() as u64).div_ceil(60_000), Ordering::Relaxed);
            peer.conn.send_if_modified(|c| {
                if c.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                    *c = None;
                    true
                } else {
                    false
                }
            });
        });
    }

    /// The peer's open connection, calling (sessions) or waiting for it.
    async fn connection(&self, peer: &LinkPeer) -> Result<Arc<Conn>, String> {
        let mut changes = peer.conn.subscribe();
        // In sessions mode the sender held the gather until its maximum wait
        // ([`super::calls`]): when it comes here without a call up, it calls.
        let deadline = Instant::now() + CONNECT_WAIT;
        loop {
            if let Some(conn) = peer.open_conn() {
                return Ok(conn);
            }
            peer.wanted.store(true, Ordering::SeqCst);
            peer.want.notify_one();
            if Instant::now() >= deadline {
                return Err("the link is down".into());
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.changed()).await;
        }
    }

    /// The bound on handshakes in progress.
    pub(super) fn handshakes(&self) -> &Arc<Semaphore> {
        &self.handshakes
    }

    /// `link.handshake_timeout_ms`.
    pub(super) fn handshake_timeout_ms(&self) -> u64 {
        self.config.handshake_timeout_ms
    }

    /// The budget all links share.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Sessions mode: hold the gather of `lane` for `peer` until it is due or a call
    /// is up ([`super::calls::hold`]); then keep the call that is up from hanging up
    /// until the sender lets go ([`Conn::busy`]). Other modes and peers: at once.
    async fn hold(&self, peer: &LinkPeer, lane: Lane, outbound: &Outbound) -> Hold {
        if self.config.mode != LinkMode::Sessions {
            return Hold::default();
        }
        let mut changes = peer.conn.subscribe();
        // A call that is saying goodbye is no call to ride: what is gathered for it
        // would find it gone and call again at once.
        let call_up = async move {
            let _ = changes.wait_for(|c| c.as_ref().is_some_and(|c| c.is_open() && !c.ending())).await;
        };
        let clock = Arc::clone(outbound.clock());
        let waits = super::calls::MaxWaits::of(&self.config);
        super::calls::hold(outbound.waiting(), &peer.name, lane, waits, || clock.now_ms(), call_up).await;
        peer.open_conn().map_or_else(Hold::default, |conn| Hold::on(conn.busy()))
    }

    /// How large a transaction to `peer` should be: about a minute of the line at the
    /// rate the open connection (else the last one) estimated ([`super::flow::txn_bytes`]).
    fn txn_bytes(&self, peer: &LinkPeer) -> usize {
        if let Some(conn) = peer.open_conn() {
            peer.rate.store(conn.rate() as u64, Ordering::Relaxed);
        }
        super::flow::txn_bytes(peer.rate.load(Ordering::Relaxed) as f64)
    }

    /// Deliver `txn` to the linked `peer`; `replaced`: the sender replaces it when
    /// something newer is due (its ack may wait, [`Conn::send`]).
    async fn deliver(&self, peer: &LinkPeer, txn: &StoredTxn, replaced: bool) -> Delivery {
        let class = class_of(txn);
        let fail = |e: String| Delivery { result: Err(e), traffic: Traffic::default(), rtt_ms: None };
        if class == Class::Bulk && self.budget.exhausted() {
            return fail("today's link budget is spent; bulk waits for tomorrow".into());
        }
        let sessions = self.config.mode == LinkMode::Sessions;
        let was_cut = sessions && peer.cut.lock().unwrap_or_else(|p| p.into_inner()).remove(&txn.txn_id);
        if was_cut && peer.open_conn().is_none() {
            // Its call ended under it (a hang-up crossed it): it waits for the next
            // call, or its class's maximum wait, like anything new.
            let wait = Duration::from_millis(super::calls::MaxWaits::of(&self.config).of_class(class));
            let mut changes = peer.conn.subscribe();
            let _ = tokio::time::timeout(wait, changes.wait_for(|c| c.as_ref().is_some_and(|c| c.is_open()))).await;
        }
        if sessions && peer.open_conn().is_none() {
            // Why the line calls (each call is paid for).
            tracing::info!(peer = %peer.name, ?class, txn = %txn.txn_id, "calling: a transaction is due");
        }
        let conn = match self.connection(peer).await {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let started = Instant::now();
        let result = conn.send(class, &txn.txn_id, &txn.body, replaced).await.unwrap_or_else(|_| {
            // A resumed call that never heard the peer was refused (its restart, a
            // used ticket): no hang-up crossed this, the retry calls again at once.
            if sessions && conn.confirmed() {
                peer.cut.lock().unwrap_or_else(|p| p.into_inner()).insert(txn.txn_id.clone());
            }
            Err("the link connection ended before the peer acknowledged".into())
        });
        // A lazy ack waited for a message that went anyway: no round trip of the line.
        let rtt_ms = matches!(result, Ok(Acked { lazily: false })).then(|| started.elapsed().as_millis() as u64);
        Delivery { result: result.map(|_| ()), traffic: Traffic::default(), rtt_ms }
    }
}

/// The class of a stored transaction: bulk lane → bulk; only `m.presence` → presence;
/// anything else short. The HTTP transport's figures use the same classes.
pub fn class_of(txn: &StoredTxn) -> Class {
    if txn.lane == Lane::Bulk {
        return Class::Bulk;
    }
    let only_presence = serde_json::from_str::<serde_json::Value>(&txn.body)
        .ok()
        .and_then(|b| {
            b.get("edus")?
                .as_array()
                .map(|edus| edus.iter().all(|e| e.get("edu_type").and_then(|t| t.as_str()) == Some("m.presence")))
        })
        .unwrap_or(false);
    if only_presence { Class::Presence } else { Class::Short }
}

/// The link for linked peers, another transport for the rest.
#[derive(Debug)]
pub struct LinkTransport {
    links: Arc<Links>,
    other: Arc<dyn Transport>,
}

impl LinkTransport {
    /// Carry linked peers' transactions over `links`, the others' over `other`.
    pub fn new(links: Arc<Links>, other: Arc<dyn Transport>) -> Self {
        Self { links, other }
    }
}

impl Transport for LinkTransport {
    fn deliver<'a>(&'a self, peer: &'a PeerConfig, txn: &'a StoredTxn, replaceable: bool) -> BoxFuture<'a, Delivery> {
        Box::pin(async move {
            match self.links.peers.get(&peer.server_name) {
                // The sender asks only when this transport replaces (`replaces`).
                Some(p) => self.links.deliver(p, txn, replaceable).await,
                None => self.other.deliver(peer, txn, replaceable).await,
            }
        })
    }

    fn txn_bytes(&self, peer: &PeerConfig, lane: Lane) -> usize {
        match self.links.peers.get(&peer.server_name) {
            Some(p) => self.links.txn_bytes(p),
            None => self.other.txn_bytes(peer, lane),
        }
    }

    fn replaces(&self, peer: &PeerConfig) -> bool {
        match self.links.peers.get(&peer.server_name) {
            // A line that calls holds everything for minutes anyway.
            Some(_) => self.links.config.mode == LinkMode::Always,
            None => self.other.replaces(peer),
        }
    }

    fn hold<'a>(&'a self, peer: &'a PeerConfig, lane: Lane, outbound: &'a Outbound) -> BoxFuture<'a, Hold> {
        Box::pin(async move {
            match self.links.peers.get(&peer.server_name) {
                Some(p) => self.links.hold(p, lane, outbound).await,
                None => self.other.hold(peer, lane, outbound).await,
            }
        })
    }
}
