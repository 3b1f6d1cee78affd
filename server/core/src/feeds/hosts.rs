//! Politeness towards origins: one request at a time per host, and a pause of
//! `feeds.host_spacing_ms` between the end of one request to a host and the start of
//! the next. A poll waits for its host's turn before it takes one of the
//! concurrent-poll permits, so the feeds of one slow host never hold up the others.
//!
//! The pause is an in-line wait inside one poll (like the link's cork), not a
//! scheduled job: the poll is already due, it only may not start yet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

/// Hosts with no poll waiting or running are forgotten once there are more than
/// this many (so the map is bounded by the hosts being polled).
const PRUNE_ABOVE: usize = 1024;

/// When each host's last request ended, and whose turn it is.
#[derive(Debug)]
pub struct HostGate {
    spacing: Duration,
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Instant>>>>>,
}

/// One poll's turn at a host: the host is its own until this is dropped, and the
/// drop marks when the next request there may start.
#[derive(Debug)]
pub struct HostTurn {
    guard: Option<OwnedMutexGuard<Option<Instant>>>,
}

impl Drop for HostTurn {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = Some(Instant::now());
        }
    }
}

impl HostGate {
    /// A gate pausing `spacing_ms` between requests to one host; 0 lets every
    /// request go at once (a local origin standing in for many hosts, in benches).
    pub fn new(spacing_ms: u64) -> Self {
        Self { spacing: Duration::from_millis(spacing_ms), hosts: Mutex::new(HashMap::new()) }
    }

    /// Wait until `host` is free and its pause is over; the turn holds it.
    pub async fn turn(&self, host: &str) -> HostTurn {
        if self.spacing.is_zero() {
            return HostTurn { guard: None };
        }
        let slot = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            if hosts.len() > PRUNE_ABOVE {
                let spacing = self.spacing;
                hosts.retain(|_, slot| {
                    Arc::strong_count(slot) > 1
                        || slot.try_lock().map_or(true, |last| last.is_some_and(|t| t.elapsed() < spacing))
                });
            }
            Arc::clone(hosts.entry(host.to_ascii_lowercase()).or_default())
        };
        let guard = slot.lock_owned().await;
        if let Some(last) = *guard {
            tokio::time::sleep_until(last + self.spacing).await;
        }
        HostTurn { guard: Some(guard) }
    }

    /// Hosts remembered now.
    pub fn len(&self) -> usize {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no host is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The host a feed URL is fetched from (empty when it has none; such a URL never
/// passes the guard anyway).
pub fn host_of(url: &str) -> String {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_request_at_a_time_per_host_with_a_pause_between() {
        let gate = Arc::new(HostGate::new(1000));
        let start = Instant::now();
        let first = gate.turn("feeds.example").await;
        assert_eq!(start.elapsed(), Duration::ZERO, "a free host is taken at once");
        let g = Arc::clone(&gate);
        let second = tokio::spawn(async move {
            let _turn = g.turn("FEEDS.example").await;
            Instant::now()
        });
        let other = gate.turn("other.example").await;
        assert_eq!(start.elapsed(), Duration::ZERO, "another host does not wait");
        tokio::time::sleep(Duration::from_millis(300)).await; // the first request takes 300 ms
        drop(first);
        let began = second.await.expect("the second turn");
        assert_eq!(began - start, Duration::from_millis(1300), "it waited for the end, then the pause");
        drop(other);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_spacing_never_waits_and_idle_hosts_are_forgotten() {
        let free = HostGate::new(0);
        let (_a, _b) = (free.turn("h").await, free.turn("h").await);
        assert!(free.is_empty());

        let gate = HostGate::new(10);
        for i in 0..=PRUNE_ABOVE {
            drop(gate.turn(&format!("h{i}")).await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let held = gate.turn("busy").await;
        assert_eq!(gate.len(), 1, "only the host in use is kept");
        drop(held);
    }

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of("https://Feeds.Example:8443/a.xml"), "feeds.example");
        assert_eq!(host_of("not a url"), "");
    }
}
