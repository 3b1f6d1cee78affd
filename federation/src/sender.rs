//! The sender of one peer: wait for something to send, hold it for the batch window
//! (which starts at the first change and is never extended), form one transaction of
//! at most 100 EDUs, store it, and deliver it until the peer answers 2xx, with the
//! same txnId on every retry and across restarts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::Rng;
use ruma::OwnedUserId;
use serde_json::{Value, json};
use tidings_core::outbound::StoredTxn;
use tidings_core::outbound::edus::{self, PresenceEdu, ReminderEdu, SubscribeEdu};

use crate::Federation;
use crate::peer::{Peer, PeerStats, http_size};
use crate::xmatrix;

/// The most EDUs in one transaction (the spec's limit).
pub const MAX_EDUS: usize = 100;
/// The first retry delay; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Federation {
    /// Run the sender of `peer` forever.
    pub(crate) async fn run_sender(self: Arc<Self>, peer: Arc<Peer>) {
        let dest = peer.name().to_owned();
        let Some(mut wakes) = self.core.outbound.wakes(&dest) else { return };
        // At start there may be a stored transaction, queued EDUs or presence past the cursor.
        let mut woken = true;
        loop {
            match self.core.outbound.pending_txn(&dest).await {
                Ok(Some(txn)) => {
                    self.deliver(&peer, txn).await;
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(peer = %dest, error = %e, "cannot read the stored transaction; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            if !woken && wakes.changed().await.is_err() {
                return;
            }
            // The batch window starts now, at the first change, and is not extended. A due
            // reminder does not wait: it is what keeps the peer from thinking us gone.
            if !peer.reminder_due.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(self.batch_ms)).await;
            }
            wakes.borrow_and_update();
            woken = false;
            match self.form_txn(&peer).await {
                Ok(Some(txn)) => self.deliver(&peer, txn).await,
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(peer = %dest, error = %e, "cannot form a transaction; retrying");
                    woken = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Gather what is due for `peer` into one stored transaction, or `None` if nothing is.
    async fn form_txn(&self, peer: &Peer) -> tidings_core::Result<Option<StoredTxn>> {
        let dest = peer.name();
        let outbound = &self.core.outbound;
        let presence = &self.core.presence;
        let cursor = outbound.cursor(dest).await?;
        let upto = presence.stream_position();
        let owed = outbound.take_owed(dest);
        let mut edus: Vec<Value> = Vec::new();

        let push = presence.pushes_for(dest, cursor, upto, &owed);
        if !push.is_empty() {
            edus.push(json!({ "edu_type": edus::PRESENCE, "content": PresenceEdu { push } }));
        }
        let wanted: BTreeSet<OwnedUserId> = presence.wanted_from(dest).into_iter().collect();
        let subscription = {
            let subscribed = peer.subscribed.lock().unwrap_or_else(|p| p.into_inner());
            let resubscribe = peer.resubscribe.swap(false, Ordering::SeqCst);
            subscription_change(subscribed.as_ref(), &wanted, resubscribe)
        };
        if let Some(sub) = &subscription {
            edus.push(json!({ "edu_type": edus::SUBSCRIBE, "content": sub }));
        }
        if peer.reminder_due.swap(false, Ordering::SeqCst) {
            let reminder = ReminderEdu { pushed: presence.digest_pushed(dest), held: presence.digest_held(dest) };
            edus.push(json!({ "edu_type": edus::REMINDER, "content": reminder }));
        }
        let room = MAX_EDUS.saturating_sub(edus.len());
        let rows = outbound.outbox(dest, room).await?;
        let outbox_upto = rows.last().map_or(0, |r| r.id);
        for row in &rows {
            let content: Value = serde_json::from_str(&row.content).unwrap_or(Value::Null);
            edus.push(json!({ "edu_type": row.edu_type, "content": content }));
        }
        if edus.is_empty() {
            if upto > cursor {
                outbound.advance_cursor(dest, upto).await?;
            }
            return Ok(None);
        }
        let now = self.core.clock.now_ms();
        let suffix: u32 = rand::thread_rng().r#gen();
        let txn_id = format!("{now}.{suffix:08x}");
        let body = json!({ "origin": &*self.core.server_name, "origin_server_ts": now, "pdus": [], "edus": edus });
        let txn =
            StoredTxn { txn_id, body: body.to_string(), presence_upto: upto, outbox_upto, edus: edus.len() as u64 };
        if let Err(e) = outbound.store_txn(dest, txn.clone()).await {
            outbound.restore_owed(dest, owed);
            return Err(e);
        }
        if subscription.is_some() {
            *peer.subscribed.lock().unwrap_or_else(|p| p.into_inner()) = Some(wanted);
        }
        Ok(Some(txn))
    }

    /// Deliver a stored transaction until the peer acknowledges it.
    async fn deliver(&self, peer: &Peer, txn: StoredTxn) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.send_once(peer, &txn).await {
                Ok(()) => {
                    if let Err(e) = self.core.outbound.ack_txn(peer.name(), txn.clone()).await {
                        tracing::error!(peer = peer.name(), error = %e, "cannot record an acknowledged transaction");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                    PeerStats::add(&peer.stats.txns_sent, 1);
                    return;
                }
                Err(reason) => {
                    tracing::warn!(peer = peer.name(), txn = %txn.txn_id, %reason, retry_in_ms = backoff.as_millis() as u64, "transaction not delivered");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = peer.heard.notified() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn send_once(&self, peer: &Peer, txn: &StoredTxn) -> Result<(), String> {
        let path = format!("/_matrix/federation/v1/send/{}", txn.txn_id);
        let body: Value = serde_json::from_str(&txn.body).map_err(|e| format!("stored body unreadable: {e}"))?;
        let auth = xmatrix::try_authorization_header(
            &self.key,
            &self.core.server_name,
            peer.name(),
            "PUT",
            &path,
            Some(&body),
        )
        .map_err(|e| format!("cannot sign: {e}"))?;
        let url = format!("{}{path}", peer.config.url.trim_end_matches('/'));
        let host = url.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default().to_owned();
        let sent = http_size(
            &format!("PUT {path} HTTP/1.1"),
            [
                ("host", host.as_bytes()),
                ("authorization", auth.as_bytes()),
                ("content-type", b"application/json".as_slice()),
                ("content-length", txn.body.len().to_string().as_bytes()),
                ("accept", b"*/*".as_slice()),
            ]
            .into_iter(),
            txn.body.len(),
        );
        PeerStats::add(&peer.stats.bytes_sent, sent);
        let response = self
            .http
            .put(&url)
            .header("authorization", &auth)
            .header("content-type", "application/json")
            .body(txn.body.clone())
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        let headers: Vec<(String, Vec<u8>)> =
            response.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec())).collect();
        let answer = response.bytes().await.map_err(|e| format!("answer unreadable: {e}"))?;
        let received = http_size(
            &format!("HTTP/1.1 {status}"),
            headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            answer.len(),
        );
        PeerStats::add(&peer.stats.bytes_received, received);
        if !status.is_success() {
            return Err(format!("peer answered {status}: {}", String::from_utf8_lossy(&answer)));
        }
        if peer.heard_at(self.core.clock.now_ms()) {
            self.core.outbound.wake(peer.name());
        }
        Ok(())
    }
}

/// The subscription EDU to send, given what the peer has and what we want now.
pub fn subscription_change(
    subscribed: Option<&BTreeSet<OwnedUserId>>,
    wanted: &BTreeSet<OwnedUserId>,
    resubscribe: bool,
) -> Option<SubscribeEdu> {
    match subscribed {
        Some(_) | None if resubscribe => {
            Some(SubscribeEdu { add: wanted.iter().cloned().collect(), remove: Vec::new(), replace: true })
        }
        None if wanted.is_empty() => None,
        None => Some(SubscribeEdu { add: wanted.iter().cloned().collect(), remove: Vec::new(), replace: true }),
        Some(had) => {
            let add: Vec<_> = wanted.difference(had).cloned().collect();
            let remove: Vec<_> = had.difference(wanted).cloned().collect();
            (!add.is_empty() || !remove.is_empty()).then_some(SubscribeEdu { add, remove, replace: false })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::UserId;

    fn set(names: &[&str]) -> BTreeSet<OwnedUserId> {
        names.iter().map(|n| UserId::parse(format!("@{n}:b.test")).expect("id")).collect()
    }

    #[test]
    fn first_subscription_is_whole_then_diffs() {
        assert_eq!(subscription_change(None, &set(&[]), false), None);
        let first = subscription_change(None, &set(&["x", "y"]), false).expect("first");
        assert!(first.replace && first.add.len() == 2);
        assert_eq!(subscription_change(Some(&set(&["x", "y"])), &set(&["x", "y"]), false), None);
        let diff = subscription_change(Some(&set(&["x", "y"])), &set(&["y", "z"]), false).expect("diff");
        assert_eq!(
            (diff.add, diff.remove, diff.replace),
            (set(&["z"]).into_iter().collect(), set(&["x"]).into_iter().collect(), false)
        );
        let again = subscription_change(Some(&set(&["x"])), &set(&["x"]), true).expect("resubscribe");
        assert!(again.replace);
    }
}
