//! Wakes long-polling `/sync` requests: one watch channel per user holding the
//! highest stream position that concerns them.

use std::collections::HashMap;
use std::sync::Mutex;

use ruma::{OwnedUserId, UserId};
use tokio::sync::watch;

/// Per-user stream heads.
#[derive(Debug)]
pub struct Notifier {
    heads: Mutex<HashMap<OwnedUserId, watch::Sender<u64>>>,
    closed: watch::Sender<bool>,
}

impl Default for Notifier {
    fn default() -> Self {
        Self { heads: Mutex::new(HashMap::new()), closed: watch::channel(false).0 }
    }
}

impl Notifier {
    /// A notifier with no heads yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The server is shutting down: every waiting sync answers now.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Something at position `pos` concerns `user`: wake their syncs.
    pub fn bump(&self, user: &UserId, pos: u64) {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        match heads.get(user) {
            Some(tx) => {
                tx.send_if_modified(|head| {
                    let newer = pos > *head;
                    if newer {
                        *head = pos;
                    }
                    newer
                });
            }
            None => {
                heads.insert(user.to_owned(), watch::channel(pos).0);
            }
        }
    }

    /// A receiver for `user`'s head (created at 0 if the user had none).
    pub fn subscribe(&self, user: &UserId) -> watch::Receiver<u64> {
        let mut heads = self.heads.lock().unwrap_or_else(|p| p.into_inner());
        heads.entry(user.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Wait until `user`'s head passes `since`, or `timeout` elapses, or the server
    /// shuts down. Returns the head if it passed.
    pub async fn wait_past(&self, user: &UserId, since: u64, timeout: std::time::Duration) -> Option<u64> {
        let mut rx = self.subscribe(user);
        let mut closed = self.closed.subscribe();
        let wait = rx.wait_for(|head| *head > since);
        tokio::select! {
            r = tokio::time::timeout(timeout, wait) => match r {
                Ok(Ok(head)) => Some(*head),
                _ => None,
            },
            _ = closed.wait_for(|c| *c) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn alice() -> OwnedUserId {
        UserId::parse("@alice:hs.test").expect("valid id")
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_on_a_newer_position_only() {
        let n = Arc::new(Notifier::new());
        n.bump(&alice(), 5);
        // Already past 4: no wait at all.
        assert_eq!(n.wait_past(&alice(), 4, Duration::from_secs(30)).await, Some(5));
        // Not past 5 and nothing comes: times out.
        assert_eq!(n.wait_past(&alice(), 5, Duration::from_secs(30)).await, None);
        let n2 = Arc::clone(&n);
        let waiter = tokio::spawn(async move { n2.wait_past(&alice(), 5, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        n.bump(&alice(), 3); // older: ignored
        n.bump(&alice(), 6);
        assert_eq!(waiter.await.expect("task"), Some(6));
    }

    #[tokio::test(start_paused = true)]
    async fn close_releases_waiters() {
        let n = Arc::new(Notifier::new());
        let n2 = Arc::clone(&n);
        let waiter = tokio::spawn(async move { n2.wait_past(&alice(), 0, Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        n.close();
        assert_eq!(waiter.await.expect("task"), None);
    }
}
