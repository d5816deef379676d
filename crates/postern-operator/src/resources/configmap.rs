//! The ConfigMap holding gateway.toml.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use postern_api::MailRelay;

use super::meta;
use crate::config::paths;
use crate::names::Names;

pub fn build(relay: &MailRelay, config_toml: &str) -> ConfigMap {
    let names = Names::new(&super::relay_name(relay));
    ConfigMap {
        metadata: meta(relay, names.config()),
        data: Some(BTreeMap::from([(
            paths::CONFIG_FILE.to_owned(),
            config_toml.to_owned(),
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_and_named() {
        let r = super::super::testing::relay(serde_json::json!({}));
        let cm = build(&r, "hostname = \"x\"\n");
        assert_eq!(cm.metadata.name.as_deref(), Some("mail-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("apps"));
        let owner = &cm.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("MailRelay", "mail", Some(true))
        );
        assert_eq!(cm.data.unwrap()["gateway.toml"], "hostname = \"x\"\n");
    }
}
