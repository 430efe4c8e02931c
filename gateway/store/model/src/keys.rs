//! API keys: how they are made, how they are shown, and the one form in which they are kept.
//!
//! A key is `sk-` followed by 40 base62 characters (about 238 bits). Stores keep its SHA-256
//! and a display prefix; the secret is shown once, when it is created. A fast hash is right
//! here (unlike passwords): keys are long random strings, so there is nothing to brute-force,
//! and the gateway hashes the presented key on every request.

use sha2::{Digest, Sha256};

/// SHA-256 of a key: what stores keep and what the gateway looks keys up by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    pub fn of(key: &str) -> Self {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(KeyDigest(bytes))
    }
}

/// `sk-` and the first 8 secret characters: enough to tell keys apart in a list, far too
/// little to guess the rest.
const PREFIX_LEN: usize = 3 + 8;

/// A freshly generated key: the secret (shown once), its display prefix and its digest.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub digest: KeyDigest,
}

#[cfg(not(target_arch = "wasm32"))]
pub fn generate() -> GeneratedKey {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    const SECRET_LEN: usize = 40;
    let mut rng = rand::rng();
    let mut secret = String::with_capacity(3 + SECRET_LEN);
    secret.push_str("sk-");
    for _ in 0..SECRET_LEN {
        secret.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    let prefix = secret[..PREFIX_LEN].to_owned();
    let digest = KeyDigest::of(&secret);
    GeneratedKey { secret, prefix, digest }
}

/// The display prefix for a key that came from elsewhere (the config file's bootstrap keys,
/// which may be short): never more than a third of the key, so a short key is not given away.
pub fn display_prefix(key: &str) -> String {
    let shown = (key.chars().count() / 3).min(PREFIX_LEN);
    let mut prefix: String = key.chars().take(shown).collect();
    prefix.push('…');
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn generated_keys_are_distinct_and_hash_consistently() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with("sk-"));
        assert_eq!(a.secret.len(), 43);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.digest, KeyDigest::of(&a.secret));
        assert_eq!(KeyDigest::from_hex(&a.digest.to_hex()), Some(a.digest));
    }

    #[test]
    fn short_keys_show_at_most_a_third() {
        assert_eq!(display_prefix("sk-demo"), "sk…");
        assert_eq!(display_prefix(""), "…");
        assert_eq!(display_prefix("sk-0123456789abcdefghijklmnopqrstuvwxyz"), "sk-01234567…");
    }
}
