//! The controller: watches MailRelays and the children they own, runs reconciles,
//! backs off on errors, and records events for what changed and what failed.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client};
use postern_api::MailRelay;

use crate::reconcile::{Context, Error, reconcile};

/// Retries with exponential back-off per relay: 10 s, 20 s, 40 s ... up to 5 minutes.
fn error_policy(relay: Arc<MailRelay>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&[error.metric_label()])
        .inc();
    let key = format!(
        "{}/{}",
        relay.metadata.namespace.as_deref().unwrap_or_default(),
        relay.metadata.name.as_deref().unwrap_or_default()
    );
    let failures = ctx
        .failures
        .lock()
        .map(|mut f| {
            let n = f.entry(key).or_insert(0);
            *n = n.saturating_add(1);
            *n
        })
        .unwrap_or(1);
    let delay = backoff(failures);
    tracing::warn!(relay = ?relay.metadata.name, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The wait after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs((10u64 << failures.saturating_sub(1).min(5)).min(300))
}

/// Runs until `shutdown` completes.
pub async fn run(
    client: Client,
    image: String,
    metrics: crate::metrics::OperatorMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let relays: Api<MailRelay> = Api::all(client.clone());
    let recorder = Recorder::new(client.clone(), Reporter::from("postern-operator"));
    let ctx = Arc::new(Context {
        client: client.clone(),
        image,
        metrics,
        recorder: recorder.clone(),
        failures: Default::default(),
    });
    Controller::new(relays, watcher::Config::default())
        .owns(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            let recorder = recorder.clone();
            async move {
                match result {
                    Ok((obj, _)) => tracing::debug!(relay = %obj.name, "reconciled"),
                    Err(kube::runtime::controller::Error::ReconcilerFailed(err, obj)) => {
                        let reference = (*obj).into();
                        let ev = Event {
                            type_: EventType::Warning,
                            reason: "ReconcileFailed".into(),
                            note: Some(err.to_string().chars().take(900).collect()),
                            action: "Reconcile".into(),
                            secondary: None,
                        };
                        let _ = recorder.publish(&ev, &reference).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "controller event"),
                }
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let d: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(d, [10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
