//! Leader election with a coordination.k8s.io Lease, for running more than one
//! operator replica: only the holder reconciles; the others wait. The holder renews
//! every third of the lease duration; a follower takes over once a lease has not been
//! renewed for its whole duration. Updates carry the lease's resourceVersion, so two
//! candidates can never both win the same round. A holder that fails to renew stops
//! (and is restarted by Kubernetes as a follower) rather than risk two leaders.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

/// One candidate for the lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

impl LeaderElection {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
        }
    }

    /// Returns once this candidate holds the lease.
    pub async fn acquire(&self) -> Result<(), kube::Error> {
        let mut announced = false;
        loop {
            if self.try_acquire_or_renew().await? {
                tracing::info!(identity = %self.identity, lease = %self.name, "became the leader");
                return Ok(());
            }
            if !announced {
                tracing::info!(identity = %self.identity, lease = %self.name, "another replica leads; waiting");
                announced = true;
            }
            tokio::time::sleep(self.duration / 3).await;
        }
    }

    /// Renews the lease; returns when it could not be renewed (leadership lost).
    pub async fn keep(&self) {
        loop {
            tokio::time::sleep(self.duration / 3).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(identity = %self.identity, "lost the lease to another replica");
                    return;
                }
                Err(e) => {
                    tracing::error!(identity = %self.identity, error = %e, "cannot renew the lease");
                    return;
                }
            }
        }
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One round: take a free or expired lease, or renew our own.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(MicroTime(renewed)), Some(secs)) => {
                now > renewed
                    .saturating_add(SignedDuration::from_secs(i64::from(secs)))
                    .unwrap_or(*renewed)
            }
            _ => true,
        };
        if !ours && !expired && spec.holder_identity.is_some() {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        let acquired = if ours {
            spec.acquire_time.clone()
        } else {
            None
        };
        lease.spec = Some(self.spec(now, acquired, transitions));
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            // Someone else changed it first: they won this round.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
