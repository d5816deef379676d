//! Events on the relay for what a reconcile changed: the gateway created, or its
//! pods rolled because the configuration or credentials changed.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use postern_api::MailRelay;

/// What a reconcile changed about the gateway workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The workload did not exist: it was created, with its configuration.
    Created {
        /// StatefulSet or Deployment.
        kind: &'static str,
        /// The workload's name.
        name: String,
    },
    /// The configuration hash on the pod template changed: the pods roll.
    ConfigurationChanged,
    /// Nothing worth telling.
    Unchanged,
}

impl Change {
    /// The change from a workload whose pod template carried `previous_hash`
    /// (`None`: the workload did not exist; `Some(None)`: it had no hash) to one
    /// carrying `hash`.
    pub fn between(
        previous_hash: Option<Option<&str>>,
        hash: &str,
        kind: &'static str,
        name: String,
    ) -> Self {
        match previous_hash {
            None => Change::Created { kind, name },
            Some(old) if old != Some(hash) => Change::ConfigurationChanged,
            Some(_) => Change::Unchanged,
        }
    }

    /// The event's reason and note, if the change is worth one.
    pub fn reason_and_note(&self) -> Option<(&'static str, String)> {
        match self {
            Change::Created { kind, name } => Some((
                "Created",
                format!("created the gateway {kind} {name} and its configuration"),
            )),
            Change::ConfigurationChanged => Some((
                "ConfigurationChanged",
                "configuration or credentials changed: rolling the gateway pods".into(),
            )),
            Change::Unchanged => None,
        }
    }
}

/// Records a Normal event on the relay for `change`; an event that cannot be written
/// is not worth failing a reconcile for.
pub async fn publish(recorder: &Recorder, relay: &MailRelay, change: &Change) {
    let Some((reason, note)) = change.reason_and_note() else {
        return;
    };
    let ev = Event {
        type_: EventType::Normal,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    let _ = recorder.publish(&ev, &relay.object_ref(&())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_workload_is_created_and_a_new_hash_rolls_the_pods() {
        let created = Change::between(None, "h2", "StatefulSet", "mail".into());
        assert_eq!(
            created.reason_and_note(),
            Some((
                "Created",
                "created the gateway StatefulSet mail and its configuration".to_owned()
            ))
        );
        for previous in [Some(None), Some(Some("h1"))] {
            let c = Change::between(previous, "h2", "Deployment", "mail".into());
            assert_eq!(c, Change::ConfigurationChanged);
            assert_eq!(
                c.reason_and_note().map(|r| r.0),
                Some("ConfigurationChanged")
            );
        }
        let same = Change::between(Some(Some("h2")), "h2", "Deployment", "mail".into());
        assert_eq!(same, Change::Unchanged);
        assert_eq!(same.reason_and_note(), None);
    }
}
