//! Password hashes for the credentials file: argon2id (default parameters) or bcrypt
//! (cost 12). Used by `postern-gateway hash-password` and by the operator.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};

/// Which kind of hash to make.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// argon2id with the argon2 crate's default parameters, as a PHC string.
    #[default]
    Argon2id,
    /// bcrypt, cost 12.
    Bcrypt,
}

/// bcrypt's cost factor.
const BCRYPT_COST: u32 = 12;

/// Hashing failed (no randomness for the salt, or the hasher refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot hash password: {0}")]
pub struct HashError(String);

/// Hashes a password with a fresh random salt.
pub fn hash_password(password: &str, algorithm: HashAlgorithm) -> Result<String, HashError> {
    let fail = |e: &dyn std::fmt::Display| HashError(e.to_string());
    match algorithm {
        HashAlgorithm::Bcrypt => bcrypt::hash(password, BCRYPT_COST).map_err(|e| fail(&e)),
        HashAlgorithm::Argon2id => {
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| fail(&e))?;
            let salt = SaltString::encode_b64(&salt).map_err(|e| fail(&e))?;
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| fail(&e))
        }
    }
}
