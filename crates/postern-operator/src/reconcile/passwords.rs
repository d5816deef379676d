//! Passwords: each user's from the Secret the spec names, or generated once into a
//! Secret the user can read; the gateway's credentials file (hashes kept stable
//! across reconciles); and the smarthost login.

use postern_config::credentials::SmarthostLogin;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use postern_api::{MailRelay, RelayMode, SecretKeyRef};

use super::cluster::{apply, secret_value};
use super::{Error, Target};
use crate::names::Names;
use crate::{config, credentials, resources};

/// What the password step found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passwords {
    /// The credentials file the gateway reads (also in the credentials Secret).
    pub credentials_file: String,
    /// `username:password` for the smarthost, when one is configured and its Secret
    /// holds both keys.
    pub smarthost_login: Option<String>,
    /// Secrets holding passwords the operator generated, in spec order.
    pub generated_secrets: Vec<String>,
    /// Why a user or the smarthost lacks a password (Degraded reasons).
    pub problems: Vec<String>,
}

/// Resolves every password, applies the credentials Secret and, when the smarthost
/// login is complete, the smarthost Secret.
pub async fn resolve(target: &Target<'_>) -> Result<Passwords, Error> {
    let (relay, names) = (target.relay, &target.names);
    let secrets: Api<Secret> = target.api();
    let users = user_passwords(relay, &secrets, names).await?;
    let credentials_file = credentials_file(relay, &secrets, names, &users.passwords).await?;
    let mut problems = users.problems;
    let smarthost_login = match smarthost(relay, &secrets).await? {
        Smarthost::NotUsed => None,
        Smarthost::Login(login) => Some(login),
        Smarthost::Incomplete { secret } => {
            problems.push(format!(
                "smarthost credentials secret {secret} needs keys username and password"
            ));
            None
        }
        Smarthost::Invalid { secret, why } => {
            problems.push(format!(
                "smarthost credentials secret {secret} cannot be used: {why}"
            ));
            None
        }
    };
    Ok(Passwords {
        credentials_file,
        smarthost_login,
        generated_secrets: users.generated,
        problems,
    })
}

/// The users' passwords and where they came from.
struct UserPasswords {
    /// Password by user name, for every user that has one.
    passwords: HashMap<String, String>,
    /// The operator's Secrets among the sources.
    generated: Vec<String>,
    /// Users whose referenced Secret lacks the password.
    problems: Vec<String>,
}

async fn user_passwords(
    relay: &MailRelay,
    secrets: &Api<Secret>,
    names: &Names,
) -> Result<UserPasswords, Error> {
    let mut passwords = HashMap::new();
    let mut generated = Vec::new();
    let mut problems = Vec::new();
    for u in &relay.spec.users {
        match &u.password_secret_ref {
            Some(r) => match referenced(secrets, r).await? {
                Some(pw) => {
                    passwords.insert(u.name.clone(), pw);
                }
                None => problems.push(format!(
                    "user {}: secret {} has no key {}",
                    u.name, r.name, r.key
                )),
            },
            None => {
                let sname = names.user_password(&u.name);
                let pw = generated_once(relay, secrets, &u.name, &sname).await?;
                passwords.insert(u.name.clone(), pw);
                generated.push(sname);
            }
        }
    }
    Ok(UserPasswords {
        passwords,
        generated,
        problems,
    })
}

/// The password a `passwordSecretRef` points at, if that Secret and key exist.
async fn referenced(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<Option<String>, Error> {
    Ok(secrets
        .get_opt(&r.name)
        .await?
        .and_then(|s| secret_value(&s, &r.key)))
}

/// The password in the operator's Secret `sname` for `user`, generated and applied
/// the first time.
async fn generated_once(
    relay: &MailRelay,
    secrets: &Api<Secret>,
    user: &str,
    sname: &str,
) -> Result<String, Error> {
    if let Some(pw) = secrets
        .get_opt(sname)
        .await?
        .and_then(|s| secret_value(&s, "password"))
    {
        return Ok(pw);
    }
    let pw = credentials::generate_password().map_err(|e| Error::Secret {
        secret: sname.to_owned(),
        what: e.to_string(),
    })?;
    apply(secrets, &resources::secret::user_password(relay, user, &pw)).await?;
    Ok(pw)
}

/// Renders the credentials file, reusing the hashes already in the credentials Secret
/// for unchanged passwords, and applies that Secret.
async fn credentials_file(
    relay: &MailRelay,
    secrets: &Api<Secret>,
    names: &Names,
    passwords: &HashMap<String, String>,
) -> Result<String, Error> {
    let existing = secrets
        .get_opt(&names.credentials())
        .await?
        .and_then(|s| secret_value(&s, config::paths::CREDENTIALS_FILE))
        .unwrap_or_default();
    let file = credentials::render(
        &relay.spec.users,
        passwords,
        &credentials::existing_hashes(&existing),
    )?;
    apply(secrets, &resources::secret::credentials(relay, &file)).await?;
    Ok(file)
}

/// The smarthost login, as far as the spec and its Secret give one.
enum Smarthost {
    /// Delivery by MX, or a smarthost without AUTH.
    NotUsed,
    /// `username:password`, copied into the operator's smarthost Secret.
    Login(String),
    /// The Secret `secret` is missing or lacks `username` or `password`.
    Incomplete { secret: String },
    /// The Secret's login cannot be written as a login file (say, a `:` in the user
    /// name); `why` never holds the password.
    Invalid { secret: String, why: String },
}

/// Reads the Secret `relay.smarthost.credentialsSecret` and, when it holds a whole
/// login, applies the operator's smarthost Secret with it.
async fn smarthost(relay: &MailRelay, secrets: &Api<Secret>) -> Result<Smarthost, Error> {
    let spec = &relay.spec;
    let (RelayMode::Smarthost, Some(sh)) = (spec.relay.mode, &spec.relay.smarthost) else {
        return Ok(Smarthost::NotUsed);
    };
    let Some(sname) = &sh.credentials_secret else {
        return Ok(Smarthost::NotUsed);
    };
    let s = secrets.get_opt(sname).await?;
    match s
        .as_ref()
        .and_then(|s| Some((secret_value(s, "username")?, secret_value(s, "password")?)))
    {
        Some((u, p)) => match SmarthostLogin::new(u, p) {
            Ok(login) => {
                apply(secrets, &resources::secret::smarthost(relay, &login)).await?;
                Ok(Smarthost::Login(login.render().trim_end().to_owned()))
            }
            Err(e) => Ok(Smarthost::Invalid {
                secret: sname.clone(),
                why: e.to_string(),
            }),
        },
        None => Ok(Smarthost::Incomplete {
            secret: sname.clone(),
        }),
    }
}
