//! Passwords, session tokens and API tokens: how they are made, hashed and checked.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use kernel::{AppError, AppResult};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Password hashing is CPU- and memory-hard (19 MiB each) by design: at most one per core runs
/// at a time, so a flood of sign-ins queues up instead of eating memory and every thread.
fn hashing_slots() -> &'static tokio::sync::Semaphore {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// Argon2id with the crate's defaults (19 MiB, 2 passes), off the async runtime's threads.
pub async fn hash_password(password: String) -> AppResult<String> {
    let _slot = hashing_slots()
        .acquire()
        .await
        .map_err(|e| AppError::internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&random_bytes::<16>())
            .map_err(|e| AppError::internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AppError::internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| AppError::internal(format!("hashing task: {e}")))?
}

/// A hash of a random password nobody knows, verified when the e-mail is unknown so that a wrong
/// e-mail takes as long as a wrong password.
fn decoy_hash() -> String {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY
        .get_or_init(|| {
            let salt =
                SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes make a valid salt");
            Argon2::default()
                .hash_password(&random_bytes::<16>(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        })
        .clone()
}

pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    let Ok(_slot) = hashing_slots().acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(decoy_hash);
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// A random URL-safe token with 256 bits of entropy.
pub fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// What is stored instead of a token: its SHA-256. Tokens are random and long, so a fast hash is
/// enough (there is nothing to brute-force).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares two hashes in time that does not depend on where they differ.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type HmacSha256 = Hmac<Sha256>;

/// The claims of a long-lived API token. Tokens are shaped as JWTs (amoCRM's are, and client
/// libraries read `exp` from them), signed with HMAC-SHA256; validity is still decided by the
/// database row, so a revoked token stops working at once.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    pub jti: String,
    pub sub: i64,
    pub account_id: i64,
    pub iat: i64,
    pub exp: i64,
    /// An OAuth access token's client id (amoCRM's tokens carry it as `aud`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The host the API is called on (amoCRM clients read it when refreshing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_domain: Option<String>,
}

pub fn sign_token(key: &[u8], claims: &TokenClaims) -> AppResult<String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = serde_json::to_vec(claims).map_err(|e| AppError::internal(e.to_string()))?;
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| AppError::internal(e.to_string()))?;
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{sig}"))
}

/// Checks the signature and expiry of a token before any database work.
pub fn verify_token(key: &[u8], token: &str, now: DateTime<Utc>) -> AppResult<TokenClaims> {
    let invalid = || AppError::unauthorized("the access token is not valid");
    let mut parts = token.trim().split('.');
    let (Some(header), Some(payload), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| invalid())?;
    let mut mac = HmacSha256::new_from_slice(key).map_err(|e| AppError::internal(e.to_string()))?;
    mac.update(header.as_bytes());
    mac.update(b".");
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig).map_err(|_| invalid())?;
    let claims: TokenClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?)
            .map_err(|_| invalid())?;
    if claims.exp <= now.timestamp() {
        return Err(AppError::unauthorized("the access token has expired"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse".into(), Some(hash)).await);
        assert!(!verify_password("anything".into(), None).await);
    }

    #[test]
    fn tokens_are_signed_and_expire() {
        let key = b"0123456789abcdef0123456789abcdef";
        let now = Utc::now();
        let claims = TokenClaims {
            jti: "x".into(),
            sub: 1,
            account_id: 2,
            iat: now.timestamp(),
            exp: now.timestamp() + 60,
            aud: None,
            api_domain: None,
        };
        let token = sign_token(key, &claims).unwrap();
        assert_eq!(token.split('.').count(), 3);
        assert_eq!(verify_token(key, &token, now).unwrap().account_id, 2);
        assert!(verify_token(b"another key another key another!", &token, now).is_err());
        let later = now + chrono::Duration::seconds(61);
        assert!(
            verify_token(key, &token, later)
                .unwrap_err()
                .message
                .contains("expired")
        );
        let mut tampered = token.clone();
        tampered.insert(token.find('.').unwrap() + 2, 'x');
        assert!(verify_token(key, &tampered, now).is_err());
        assert_ne!(token_hash("a"), token_hash("b"));
    }
}
