//! Consent as the presence tests ask for it through the presence lists of the
//! client API (INTERFACE.md, "Presence lists"): one user asks to watch another, who
//! allows it.

use std::time::Duration;

use serde_json::json;

use crate::Session;
use crate::paths::{answer_path, list_path};
use crate::wait::eventually;

/// `watcher` asks to watch `target`, the request reaches `target`, `target` allows
/// it and the answer reaches `watcher` (its list entry turns `accepted`); each step
/// within `within`. Across servers, the request and the answer each cross once.
///
/// # Panics
///
/// When an answer is not 200 `{}`, or a step does not happen in time.
pub async fn watch(watcher: &Session, target: &Session, within: Duration) {
    let got = watcher.post(&list_path(&watcher.user_id), json!({"invite": [target.user_id]})).await;
    assert_eq!(got, (200, json!({})), "{} inviting {}", watcher.user_id, target.user_id);
    eventually(within, || async {
        let got = target.requesters().await;
        if got.contains(&watcher.user_id) { Ok(()) } else { Err(got) }
    })
    .await;
    let got = target.post(&answer_path(&watcher.user_id), json!({"allow": true})).await;
    assert_eq!(got, (200, json!({})), "{} allowing {}", target.user_id, watcher.user_id);
    eventually(within, || async {
        let (_, body) = watcher.get(&list_path(&watcher.user_id)).await;
        let accepted = body["entries"].as_array().is_some_and(|e| {
            e.iter().any(|e| e["user_id"] == json!(target.user_id) && e["subscription"] == "accepted")
        });
        if accepted { Ok(()) } else { Err(body) }
    })
    .await;
}
