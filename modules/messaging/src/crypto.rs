//! Channel credentials at rest: AES-256-GCM with a key from config, a random nonce per value.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use kernel::{AppError, AppResult};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a channel needs to talk to its provider; never shown back in full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Secrets {
    /// Telegram's bot token, or Meta's access token.
    pub token: String,
    /// Meta's app secret (webhook signatures).
    pub app_secret: String,
    /// Meta's verify token (the subscription check).
    pub verify_token: String,
    /// Telegram's `secret_token`, sent back in every webhook call.
    pub secret_token: String,
}

pub struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Sealer {
        Sealer {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    pub fn seal(&self, secrets: &Secrets) -> AppResult<Vec<u8>> {
        let plain = serde_json::to_vec(secrets).map_err(|e| AppError::internal(e.to_string()))?;
        let mut nonce = [0u8; 12];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| AppError::internal("cannot encrypt channel credentials"))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    pub fn open(&self, sealed: &[u8]) -> AppResult<Secrets> {
        if sealed.len() < 12 {
            return Err(AppError::internal("channel credentials are damaged"));
        }
        let (nonce, body) = sealed.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), body)
            .map_err(|_| {
                AppError::internal(
                    "channel credentials cannot be decrypted: was [messaging] credentials_key changed?",
                )
            })?;
        serde_json::from_slice(&plain).map_err(|e| AppError::internal(e.to_string()))
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`, compared in
/// constant time.
pub fn meta_signature_ok(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(given) = unhex(given) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// `sha256=<hex>` for `body` under `secret` (what Meta sends; the fake providers use it).
pub fn meta_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Equal strings, in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_with_the_same_key_only() {
        let s = Secrets {
            token: "123:abc".into(),
            ..Default::default()
        };
        let a = Sealer::new(&[7; 32]);
        let sealed = a.seal(&s).unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("123:abc"));
        assert_eq!(a.open(&sealed).unwrap(), s);
        assert!(Sealer::new(&[8; 32]).open(&sealed).is_err());
    }

    #[test]
    fn meta_signatures_are_checked_over_the_exact_bytes() {
        let body = br#"{"object":"whatsapp_business_account"}"#;
        let sig = meta_signature("app-secret", body);
        assert!(meta_signature_ok("app-secret", body, &sig));
        assert!(!meta_signature_ok("other", body, &sig));
        let mut changed = body.to_vec();
        changed[3] ^= 1;
        assert!(!meta_signature_ok("app-secret", &changed, &sig));
        assert!(!meta_signature_ok("app-secret", body, "sha256=zz"));
        assert!(!meta_signature_ok("app-secret", body, ""));
    }
}
