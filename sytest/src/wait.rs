//! Waiting for a condition with a deadline, instead of sleeping blindly.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long [`eventually`] waits between two checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The outcome of one check made by [`eventually`]: met (with a value) or not yet
/// (with a reason shown if the deadline passes).
///
/// Implemented for `bool`, `Option<T>` and `Result<T, E>` (the last `Err` is shown when
/// the wait fails, so a check can say what it saw).
pub trait Check {
    /// What a met condition yields.
    type Output;
    /// `Ok(value)` when the condition is met, `Err(what was seen)` when not yet.
    fn into_outcome(self) -> Result<Self::Output, String>;
}

impl Check for bool {
    type Output = ();
    fn into_outcome(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("the check returned false".to_owned()) }
    }
}

impl<T> Check for Option<T> {
    type Output = T;
    fn into_outcome(self) -> Result<T, String> {
        self.ok_or_else(|| "the check returned None".to_owned())
    }
}

impl<T, E: Debug> Check for Result<T, E> {
    type Output = T;
    fn into_outcome(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Runs `check` every [`POLL_INTERVAL`] until it is met and returns its value, or
/// gives up after `deadline` with `Err` describing the last outcome. `check` runs at
/// least once, and once more at the deadline.
pub async fn try_eventually<C, F, Fut>(deadline: Duration, mut check: F) -> Result<C::Output, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Check,
{
    let start = Instant::now();
    let end = start + deadline;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match check().await.into_outcome() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        let now = Instant::now();
        if now >= end {
            return Err(format!(
                "condition not met within {deadline:?} ({attempts} checks, {:?} elapsed); last: {last}",
                now - start
            ));
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(end)).await;
    }
}

/// Like [`try_eventually`], but panics (fails the test) when the deadline passes.
///
/// ```no_run
/// # use std::time::Duration;
/// # use tidings_sytest::{Session, eventually};
/// # async fn demo(alice: Session, bob: Session) {
/// let path = "/_matrix/client/v3/presence/%40bob%3Ahs1.test/status";
/// let status = eventually(Duration::from_secs(10), || async {
///     let (code, body) = alice.get(path).await;
///     match body["presence"].as_str() {
///         Some("offline") if code == 200 => Ok(body),
///         _ => Err((code, body)),
///     }
/// })
/// .await;
/// # let _ = (status, bob);
/// # }
/// ```
///
/// # Panics
///
/// When the condition is not met within `deadline`, with the last outcome.
pub async fn eventually<C, F, Fut>(deadline: Duration, check: F) -> C::Output
where
    F: FnMut() -> Fut,
    Fut: Future<Output = C>,
    C: Check,
{
    match try_eventually(deadline, check).await {
        Ok(value) => value,
        Err(why) => panic!("eventually: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn waits_until_met() {
        let n = AtomicU32::new(0);
        let v = eventually(Duration::from_secs(5), || async {
            let k = n.fetch_add(1, Ordering::Relaxed);
            (k >= 3).then_some(k)
        })
        .await;
        assert_eq!(v, 3);
    }

    #[tokio::test]
    async fn reports_last_error() {
        let err =
            try_eventually(Duration::from_millis(50), || async { Err::<(), _>("nope") }).await.expect_err("never met");
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[tokio::test]
    async fn bool_checks() {
        eventually(Duration::from_millis(10), || async { true }).await;
        assert!(try_eventually(Duration::from_millis(10), || async { false }).await.is_err());
    }
}
