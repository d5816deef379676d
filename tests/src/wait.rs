//! Waiting for something to become true: [`eventually`] repeats a check until it
//! passes (a `bool` check) or gives a value (an `Option` check), and fails the test
//! with what it waited for when time runs out. [`eventually_async`] is the same for
//! async checks (the Kubernetes tests).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a check is repeated.
pub const POLL: Duration = Duration::from_millis(100);

/// What a check gives: `true`, or `Some(value)`, once what is waited for happened.
pub trait Outcome {
    type Value;
    fn ready(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn ready(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn ready(self) -> Option<T> {
        self
    }
}

/// Repeats `check` every [`POLL`] until it is ready; panics with `what` after
/// `timeout`.
#[track_caller]
pub fn eventually<R: Outcome>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> R,
) -> R::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().ready() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] for an async `check`.
pub async fn eventually_async<R, F, Fut>(what: &str, timeout: Duration, mut check: F) -> R::Value
where
    R: Outcome,
    F: FnMut() -> Fut,
    Fut: Future<Output = R>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await.ready() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}
