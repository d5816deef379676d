//! Secrets: the credentials file (hashes only), the smarthost login, generated user
//! passwords (readable by the user, owned by the relay), and the operator-made TLS
//! pair and CA.

use postern_config::credentials::SmarthostLogin;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use postern_api::MailRelay;

use super::meta;
use crate::config::paths;
use crate::names::Names;

fn secret(relay: &MailRelay, name: String, type_: &str, data: BTreeMap<String, String>) -> Secret {
    Secret {
        metadata: meta(relay, name),
        type_: Some(type_.to_owned()),
        string_data: Some(data),
        ..Default::default()
    }
}

/// The gateway's credentials file.
pub fn credentials(relay: &MailRelay, file: &str) -> Secret {
    let n = Names::new(&super::relay_name(relay));
    secret(
        relay,
        n.credentials(),
        "Opaque",
        BTreeMap::from([(paths::CREDENTIALS_FILE.to_owned(), file.to_owned())]),
    )
}

/// `username:password` for the smarthost, built from the user's Secret.
pub fn smarthost(relay: &MailRelay, login: &SmarthostLogin) -> Secret {
    let n = Names::new(&super::relay_name(relay));
    secret(
        relay,
        n.smarthost(),
        "Opaque",
        BTreeMap::from([(paths::SMARTHOST_FILE.to_owned(), login.render())]),
    )
}

/// A generated password for `user` (key `password`, plus `username`).
pub fn user_password(relay: &MailRelay, user: &str, password: &str) -> Secret {
    let n = Names::new(&super::relay_name(relay));
    secret(
        relay,
        n.user_password(user),
        "Opaque",
        BTreeMap::from([
            ("username".to_owned(), user.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ]),
    )
}

/// The serving certificate (kubernetes.io/tls).
pub fn tls(relay: &MailRelay, chain: &str, key: &str) -> Secret {
    let n = Names::new(&super::relay_name(relay));
    secret(
        relay,
        n.tls(),
        "kubernetes.io/tls",
        BTreeMap::from([
            ("tls.crt".to_owned(), chain.to_owned()),
            ("tls.key".to_owned(), key.to_owned()),
        ]),
    )
}

/// The operator-made CA: `ca.crt` is what clients must trust.
pub fn ca(relay: &MailRelay, cert: &str, key: &str) -> Secret {
    let n = Names::new(&super::relay_name(relay));
    secret(
        relay,
        n.ca(),
        "Opaque",
        BTreeMap::from([
            ("ca.crt".to_owned(), cert.to_owned()),
            ("ca.key".to_owned(), key.to_owned()),
        ]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_keys() {
        let r = super::super::testing::relay(serde_json::json!({}));
        let s = tls(&r, "CHAIN", "KEY");
        assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(s.metadata.name.as_deref(), Some("mail-tls"));
        let s = user_password(&r, "App_1", "pw");
        assert_eq!(s.metadata.name.as_deref(), Some("mail-user-app-1"));
        assert_eq!(s.string_data.unwrap()["password"], "pw");
        let s = smarthost(&r, &SmarthostLogin::new("u", "p").unwrap());
        assert_eq!(s.string_data.unwrap()["credentials"], "u:p\n");
    }
}
