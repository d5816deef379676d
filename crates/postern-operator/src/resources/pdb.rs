//! PodDisruptionBudget: at most one gateway pod voluntarily down at a time, so a
//! node drain never takes the whole relay away.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use postern_api::MailRelay;

use super::meta;
use crate::names::{Names, selector};

pub fn build(relay: &MailRelay) -> PodDisruptionBudget {
    let name = super::relay_name(relay);
    PodDisruptionBudget {
        metadata: meta(relay, Names::new(&name).service()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector(&name)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
