//! What this site knows of other sites' mirrors, and the rule that picks where a
//! feed comes from. The rule is deterministic, so sites that start at once settle
//! on one fetcher per feed without talking it over: a site that fetches a feed
//! itself hands it to a mirror whose name sorts lower than its own; a site that
//! does not fetch it yet takes the lowest-named mirror.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use crate::config::FeedFetch;

/// Where a feed's items come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// Fetched here from its origin.
    Origin,
    /// Carried by this peer.
    Peer(String),
}

impl Upstream {
    /// As stored and shown: `origin` or `peer:<server_name>`.
    pub fn as_source(&self) -> String {
        match self {
            Self::Origin => "origin".to_owned(),
            Self::Peer(p) => format!("peer:{p}"),
        }
    }

    /// From the stored form; anything unknown is the origin.
    pub fn from_source(s: &str) -> Self {
        match s.strip_prefix("peer:") {
            Some(p) if !p.is_empty() => Self::Peer(p.to_owned()),
            _ => Self::Origin,
        }
    }
}

/// Why a mirror was given up for a feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// It answered a server error.
    ServerError,
    /// Three client errors in a row.
    ClientErrors,
    /// Nothing was heard from it for `feeds.mirror_silence_ms`.
    Silence,
}

#[derive(Debug, Default)]
struct Known {
    /// url → peers that announced they mirror it.
    announced: HashMap<String, BTreeSet<String>>,
    /// Peers that told us they never fetch origins (`fetch = "peers"`).
    not_fetching: BTreeSet<String>,
    /// (peer, url) given up, and why.
    dropped: BTreeMap<(String, String), DropReason>,
    /// (peer, url) → client errors in a row.
    client_errors: HashMap<(String, String), u32>,
}

/// Peers' mirrors as announced, and the mirrors given up.
#[derive(Debug)]
pub struct Mirrors {
    server_name: String,
    mode: FeedFetch,
    /// The configured peers, sorted: a `peers` site may ask any that fetches.
    peers: Vec<String>,
    known: Mutex<Known>,
}

impl Mirrors {
    /// Knowledge for this site, in `mode`, among `peers`.
    pub fn new(server_name: &str, mode: FeedFetch, peers: &[String]) -> Self {
        let mut peers = peers.to_vec();
        peers.sort();
        Self { server_name: server_name.to_owned(), mode, peers, known: Mutex::new(Known::default()) }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Load what was stored: announced mirrors and peers' modes.
    pub fn load(&self, mirrors: Vec<(String, String)>, modes: Vec<(String, bool)>) {
        let mut k = self.known();
        for (peer, url) in mirrors {
            k.announced.entry(url).or_default().insert(peer);
        }
        for (peer, fetches) in modes {
            if !fetches {
                k.not_fetching.insert(peer);
            }
        }
    }

    /// `peer` announced its mode and what it now mirrors or no longer does. A new
    /// announcement forgives an earlier drop of that mirror.
    pub fn announce(&self, peer: &str, fetches: bool, add: &[String], remove: &[String]) {
        let mut k = self.known();
        if fetches {
            k.not_fetching.remove(peer);
        } else {
            k.not_fetching.insert(peer.to_owned());
        }
        for url in add {
            k.announced.entry(url.clone()).or_default().insert(peer.to_owned());
            k.dropped.remove(&(peer.to_owned(), url.clone()));
            k.client_errors.remove(&(peer.to_owned(), url.clone()));
        }
        for url in remove {
            if let Some(set) = k.announced.get_mut(url) {
                set.remove(peer);
            }
        }
    }

    /// Give up `peer` as the mirror of `url`.
    pub fn drop_mirror(&self, peer: &str, url: &str, why: DropReason) {
        self.known().dropped.insert((peer.to_owned(), url.to_owned()), why);
    }

    /// `peer` was heard from again: mirrors given up for silence are usable again.
    pub fn heard_again(&self, peer: &str) -> bool {
        let mut k = self.known();
        let before = k.dropped.len();
        k.dropped.retain(|(p, _), why| !(p == peer && *why == DropReason::Silence));
        before != k.dropped.len()
    }

    /// A failed poll reported by the mirror `peer` of `url`; `Some` when that gives it up.
    pub fn failed(&self, peer: &str, url: &str, code: Option<u16>) -> Option<DropReason> {
        let mut k = self.known();
        let key = (peer.to_owned(), url.to_owned());
        let why = if code.is_some_and(|c| c >= 500) {
            Some(DropReason::ServerError)
        } else {
            let n = k.client_errors.entry(key.clone()).or_default();
            *n += 1;
            (*n >= 3).then_some(DropReason::ClientErrors)
        };
        if let Some(why) = why {
            k.client_errors.remove(&key);
            k.dropped.insert(key, why);
        }
        why
    }

    /// The mirror `peer` of `url` delivered: its count of client errors starts again.
    pub fn succeeded(&self, peer: &str, url: &str) {
        self.known().client_errors.remove(&(peer.to_owned(), url.to_owned()));
    }

    /// The peers that announced `url`, lowest name first, without those given up.
    pub fn mirrors_of(&self, url: &str) -> Vec<String> {
        let k = self.known();
        k.announced
            .get(url)
            .map(|set| {
                set.iter().filter(|p| !k.dropped.contains_key(&((*p).clone(), url.to_owned()))).cloned().collect()
            })
            .unwrap_or_default()
    }

    /// Where `url` should come from now, given where it comes from (`None`: nowhere
    /// yet). `None` back: nobody can carry it (a `peers` site with no usable peer).
    pub fn choose(&self, url: &str, current: Option<&Upstream>) -> Option<Upstream> {
        let mirrors = self.mirrors_of(url);
        let lowest = mirrors.first().cloned();
        let usable = |p: &String| mirrors.contains(p);
        match self.mode {
            FeedFetch::Direct => match current {
                Some(Upstream::Peer(p)) if usable(p) => Some(Upstream::Peer(p.clone())),
                Some(Upstream::Origin) => match lowest {
                    Some(p) if p < self.server_name => Some(Upstream::Peer(p)),
                    _ => Some(Upstream::Origin),
                },
                _ => Some(lowest.map_or(Upstream::Origin, Upstream::Peer)),
            },
            FeedFetch::Peers => {
                if let Some(Upstream::Peer(p)) = current
                    && (usable(p) || (mirrors.is_empty() && self.may_ask(p, url)))
                {
                    return Some(Upstream::Peer(p.clone()));
                }
                if let Some(p) = lowest {
                    return Some(Upstream::Peer(p));
                }
                self.peers.iter().find(|p| self.may_ask(p, url)).map(|p| Upstream::Peer(p.clone()))
            }
        }
    }

    fn may_ask(&self, peer: &str, url: &str) -> bool {
        let k = self.known();
        self.peers.iter().any(|p| p == peer)
            && !k.not_fetching.contains(peer)
            && !k.dropped.contains_key(&(peer.to_owned(), url.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "http://news.example/feed";

    fn peer(p: &str) -> Option<Upstream> {
        Some(Upstream::Peer(p.to_owned()))
    }

    #[test]
    fn two_fetchers_settle_on_the_lower_name() {
        let b = Mirrors::new("beta.test", FeedFetch::Direct, &[]);
        let a = Mirrors::new("alpha.test", FeedFetch::Direct, &[]);
        // Both started at once and fetch; each hears the other's announcement.
        b.announce("alpha.test", true, &[U.into()], &[]);
        a.announce("beta.test", true, &[U.into()], &[]);
        assert_eq!(b.choose(U, Some(&Upstream::Origin)), peer("alpha.test"), "beta hands it to alpha");
        assert_eq!(a.choose(U, Some(&Upstream::Origin)), Some(Upstream::Origin), "alpha keeps fetching");
        // A newcomer takes the lowest mirror, whatever its own name.
        let c = Mirrors::new("aardvark.test", FeedFetch::Direct, &[]);
        c.announce("beta.test", true, &[U.into()], &[]);
        c.announce("alpha.test", true, &[U.into()], &[]);
        assert_eq!(c.choose(U, None), peer("alpha.test"));
        assert_eq!(Mirrors::new("x.test", FeedFetch::Direct, &[]).choose(U, None), Some(Upstream::Origin));
    }

    #[test]
    fn a_failing_mirror_is_given_up_and_another_takes_over() {
        let c = Mirrors::new("gamma.test", FeedFetch::Direct, &[]);
        c.announce("alpha.test", true, &[U.into()], &[]);
        c.announce("beta.test", true, &[U.into()], &[]);
        let now = peer("alpha.test");
        assert_eq!(c.failed("alpha.test", U, Some(404)), None);
        assert_eq!(c.failed("alpha.test", U, Some(404)), None);
        c.succeeded("alpha.test", U);
        assert_eq!(c.failed("alpha.test", U, Some(410)), None, "a success between resets the count");
        assert_eq!(c.failed("alpha.test", U, Some(404)), None);
        assert_eq!(c.failed("alpha.test", U, Some(404)), Some(DropReason::ClientErrors));
        assert_eq!(c.choose(U, now.as_ref()), peer("beta.test"));
        assert_eq!(c.failed("beta.test", U, Some(503)), Some(DropReason::ServerError), "one 5xx is enough");
        assert_eq!(c.choose(U, peer("beta.test").as_ref()), Some(Upstream::Origin));
        // Silence is forgiven when the peer is heard again; errors only by a new announcement.
        c.drop_mirror("beta.test", U, DropReason::Silence);
        assert!(!c.heard_again("alpha.test"));
        c.announce("alpha.test", true, &[U.into()], &[]);
        assert_eq!(c.mirrors_of(U), vec!["alpha.test".to_owned()]);
    }

    #[test]
    fn a_peers_site_asks_a_fetching_peer_and_never_the_origin() {
        assert_eq!(Mirrors::new("raft.test", FeedFetch::Peers, &[]).choose(U, None), None, "nobody to ask");
        let peers = ["shore.test".to_owned(), "buoy.test".to_owned(), "port.test".to_owned()];
        let p = Mirrors::new("ship.test", FeedFetch::Peers, &peers);
        assert_eq!(p.choose(U, None), peer("buoy.test"), "any peer not known to refuse, lowest first");
        p.announce("buoy.test", false, &[], &[]);
        assert_eq!(p.choose(U, None), peer("port.test"), "buoy never fetches");
        p.announce("port.test", false, &[], &[]);
        assert_eq!(p.choose(U, None), peer("shore.test"), "a peer that fetches");
        assert_eq!(p.choose(U, peer("shore.test").as_ref()), peer("shore.test"), "kept while it is usable");
        p.announce("port.test", true, &[U.into()], &[]);
        assert_eq!(p.choose(U, peer("shore.test").as_ref()), peer("port.test"), "a real mirror is better");
        p.drop_mirror("port.test", U, DropReason::ServerError);
        p.drop_mirror("shore.test", U, DropReason::ServerError);
        assert_eq!(p.choose(U, peer("port.test").as_ref()), None);
        assert_eq!(Upstream::from_source(&Upstream::Peer("a".into()).as_source()), Upstream::Peer("a".into()));
        assert_eq!(Upstream::from_source("origin"), Upstream::Origin);
    }
}
