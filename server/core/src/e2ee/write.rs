//! One write at a new stream position, for the E2EE and device services: the
//! position is held in flight until the write's group committed (released by the
//! writer thread, whatever happens to the request), and the users concerned are woken
//! after the commit if the write says it changed something they see.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ruma::OwnedUserId;

use crate::error::Result;
use crate::storage::{AfterCommit, Db, Store};
use crate::stream::{Notifier, Positions};

/// Run `write` (given its stream position; it answers its result and whether it
/// changed what `wake` sees) and wait for its commit.
pub(crate) async fn write_at<T, F>(
    db: &Db,
    positions: &Arc<Positions>,
    notifier: &Arc<Notifier>,
    wake: Vec<OwnedUserId>,
    write: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store, u64) -> Result<(T, bool)> + Send + 'static,
{
    let pos = positions.reserve();
    let changed = Arc::new(AtomicBool::new(false));
    let (seen, positions, notifier) = (Arc::clone(&changed), Arc::clone(positions), Arc::clone(notifier));
    let after: AfterCommit = Box::new(move |ok: bool| {
        if ok && seen.load(Ordering::Acquire) {
            for user in &wake {
                notifier.bump(user, pos);
            }
        }
        positions.commit(pos);
    });
    db.submit(
        move |s| {
            let (value, did_change) = write(s, pos)?;
            changed.store(did_change, Ordering::Release);
            Ok(value)
        },
        Some(after),
    )
    .wait()
    .await
}
