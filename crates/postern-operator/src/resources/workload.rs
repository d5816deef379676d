//! The gateway pods: a StatefulSet with one spool PersistentVolumeClaim per pod when
//! the queue is persistent (a Deployment cannot give each replica its own disk, and
//! losing queued mail on a pod restart is what users of relay charts suffer most), or
//! a Deployment with an emptyDir spool when it is not.
//!
//! Pods run as non-root with a read-only root filesystem, no privilege escalation
//! and no capabilities; probes use the gateway's /healthz and /readyz; the grace
//! period outlasts the gateway's own drain. A config hash annotation rolls the pods
//! when the configuration or credentials change (TLS files are reloaded live).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use postern_api::MailRelay;

use super::meta;
use crate::config::{SHUTDOWN_GRACE, paths, ports};
use crate::names::{Names, labels, selector};

/// Annotation on the pod template carrying the configuration hash.
pub const CONFIG_HASH: &str = "postern.dev/config-hash";
/// Non-root user and group of the gateway.
pub const UID: i64 = 65532;

/// What the workload needs besides the spec.
pub struct WorkloadInputs<'a> {
    pub image: &'a str,
    pub config_hash: &'a str,
    /// Mount the smarthost credentials Secret.
    pub smarthost_secret: bool,
    /// The Secret holding tls.crt and tls.key.
    pub tls_secret: &'a str,
}

/// The children a workload is: a StatefulSet or a Deployment.
pub enum Workload {
    StatefulSet(Box<StatefulSet>),
    Deployment(Box<Deployment>),
}

pub fn build(relay: &MailRelay, inputs: &WorkloadInputs<'_>) -> Workload {
    let name = super::relay_name(relay);
    let n = Names::new(&name);
    let spec = &relay.spec;
    let template = pod_template(relay, inputs, &n);
    let selector = LabelSelector {
        match_labels: Some(selector(&name)),
        ..Default::default()
    };
    if spec.queue.persistence {
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("spool".into()),
                labels: Some(labels(&name)),
                ..Default::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".into()]),
                storage_class_name: spec.queue.storage_class_name.clone(),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(spec.queue.size.clone()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let retention = if spec.queue.delete_volumes_with_relay {
            "Delete"
        } else {
            "Retain"
        };
        Workload::StatefulSet(Box::new(StatefulSet {
            metadata: meta(relay, n.service()),
            spec: Some(StatefulSetSpec {
                replicas: Some(spec.replicas),
                selector,
                service_name: Some(n.headless()),
                template,
                volume_claim_templates: Some(vec![claim]),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some(retention.into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                pod_management_policy: Some("Parallel".into()),
                ..Default::default()
            }),
            ..Default::default()
        }))
    } else {
        Workload::Deployment(Box::new(Deployment {
            metadata: meta(relay, n.service()),
            spec: Some(DeploymentSpec {
                replicas: Some(spec.replicas),
                selector,
                template,
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(name != "spool"),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(ports::METRICS)),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

fn pod_template(relay: &MailRelay, inputs: &WorkloadInputs<'_>, n: &Names) -> PodTemplateSpec {
    let spec = &relay.spec;
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: n.config(),
                ..Default::default()
            }),
            ..Default::default()
        },
        secret_volume("tls", inputs.tls_secret.to_owned()),
        secret_volume("credentials", n.credentials()),
    ];
    let mut mounts = vec![
        mount("config", paths::CONFIG_DIR),
        mount("tls", paths::TLS_DIR),
        mount("credentials", paths::CREDENTIALS_DIR),
        mount("spool", paths::SPOOL_DIR),
    ];
    if inputs.smarthost_secret {
        volumes.push(secret_volume("smarthost", n.smarthost()));
        mounts.push(mount("smarthost", paths::SMARTHOST_DIR));
    }
    if !spec.queue.persistence {
        volumes.push(Volume {
            name: "spool".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
    }
    let port = |name: &str, p: u16| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(p),
        protocol: Some("TCP".into()),
        ..Default::default()
    };
    let container = Container {
        name: "gateway".into(),
        image: Some(inputs.image.to_owned()),
        args: Some(vec![
            "run".into(),
            "--config".into(),
            format!("{}/{}", paths::CONFIG_DIR, paths::CONFIG_FILE),
        ]),
        ports: Some(vec![
            port("smtp", ports::RELAY),
            port("submission", ports::SUBMISSION),
            port("submissions", ports::SUBMISSIONS),
            port("metrics", ports::METRICS),
        ]),
        volume_mounts: Some(mounts),
        resources: spec.resources.clone(),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let name = super::relay_name(relay);
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&name)),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH.to_owned(),
                inputs.config_hash.to_owned(),
            )])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(UID),
                run_as_group: Some(UID),
                fs_group: Some(UID),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            termination_grace_period_seconds: Some(SHUTDOWN_GRACE.as_secs() as i64 + 15),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            affinity: spec.affinity.clone(),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            ..Default::default()
        }),
    }
}

/// The hash that rolls the pods: configuration, credentials file, smarthost login.
pub fn config_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> WorkloadInputs<'static> {
        WorkloadInputs {
            image: "postern:1",
            config_hash: "abc",
            smarthost_secret: false,
            tls_secret: "mail-tls",
        }
    }

    #[test]
    fn persistent_queue_gets_a_statefulset_with_claims() {
        let r = super::super::testing::relay(
            serde_json::json!({"replicas": 3, "queue": {"size": "5Gi", "storageClassName": "fast"}}),
        );
        let Workload::StatefulSet(sts) = build(&r, &inputs()) else {
            panic!("expected a StatefulSet")
        };
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.service_name.as_deref(), Some("mail-pods"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        let cs = claim.spec.clone().unwrap();
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            cs.resources.unwrap().requests.unwrap()["storage"],
            Quantity("5Gi".into())
        );
        assert_eq!(
            spec.persistent_volume_claim_retention_policy
                .unwrap()
                .when_deleted
                .as_deref(),
            Some("Retain")
        );
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop.unwrap(), ["ALL"]);
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        assert!(pod.termination_grace_period_seconds.unwrap() > SHUTDOWN_GRACE.as_secs() as i64);
        assert_eq!(
            c.readiness_probe
                .clone()
                .unwrap()
                .http_get
                .unwrap()
                .path
                .as_deref(),
            Some("/readyz")
        );
        assert!(
            pod.volumes.unwrap().iter().all(|v| v.name != "spool"),
            "spool comes from the claim"
        );
        assert_eq!(
            spec.template.metadata.unwrap().annotations.unwrap()[CONFIG_HASH],
            "abc"
        );
    }

    #[test]
    fn no_persistence_gets_a_deployment_with_emptydir() {
        let r = super::super::testing::relay(serde_json::json!({"queue": {"persistence": false}}));
        let Workload::Deployment(d) = build(
            &r,
            &WorkloadInputs {
                smarthost_secret: true,
                ..inputs()
            },
        ) else {
            panic!("expected a Deployment")
        };
        let pod = d.spec.unwrap().template.spec.unwrap();
        let vols = pod.volumes.unwrap();
        assert!(
            vols.iter()
                .any(|v| v.name == "spool" && v.empty_dir.is_some())
        );
        assert!(vols.iter().any(|v| v.name == "smarthost"));
    }

    #[test]
    fn hash_changes_with_any_part() {
        assert_ne!(config_hash(&["a", "b"]), config_hash(&["a", "c"]));
        assert_ne!(config_hash(&["ab", ""]), config_hash(&["a", "b"]));
        assert_eq!(config_hash(&["a"]).len(), 64);
    }
}
