//! Status conditions (Ready, Progressing, Degraded): set one, keeping its transition
//! time when its status did not change, so `kubectl wait` and alerting see real
//! transitions only.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// Sets condition `type_` in `conditions`.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Time,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time: now,
        }),
    }
}

/// Whether condition `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut c = Vec::new();
        set(
            &mut c,
            READY,
            false,
            "Progressing",
            "starting",
            Some(1),
            t(10),
        );
        set(
            &mut c,
            READY,
            false,
            "Progressing",
            "still starting",
            Some(1),
            t(20),
        );
        assert_eq!(c[0].last_transition_time, t(10));
        assert_eq!(c[0].message, "still starting");
        set(
            &mut c,
            READY,
            true,
            "Available",
            "2/2 ready",
            Some(2),
            t(30),
        );
        assert_eq!(c[0].last_transition_time, t(30));
        assert!(is_true(&c, READY));
        set(&mut c, DEGRADED, false, "AsExpected", "", Some(2), t(30));
        assert_eq!(c.len(), 2);
    }
}
