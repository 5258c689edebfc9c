//! The cache key for Basic-auth (app password) requests: a keyed SipHash-1-3 (128-bit output)
//! of the app id and the `Authorization` values under a random 128-bit key made at start and
//! never shown, so the credential is neither stored nor recoverable from memory, and the
//! digests mean nothing outside this process. Owns only the key derivation; the cache and
//! single flight are `super`'s.
//!
//! Why SipHash and not HMAC-SHA256 (the first version): the digest only has to be a keyed
//! pseudo-random function, so that nobody without the key can make two credentials share a
//! digest, and SipHash is one. HMAC-SHA256 cost 4.7k instructions on every Basic-auth request
//! (four SHA-256 blocks), SipHash-1-3 a few hundred (callgrind, issue #14).

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

/// Which requests may be answered from the Basic-auth cache, and under which digest.
pub(crate) struct BasicAuthKey {
    key: [u8; 16],
}

/// One credential (with its app id) as the cache sees it: 16 bytes that cannot be reversed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BasicDigest(u128);

impl BasicAuthKey {
    /// A fresh random key: digests from an earlier run (or another worker process) never match.
    pub(crate) fn random() -> BasicAuthKey {
        let mut key = [0u8; 16];
        // Fails only when the OS has no randomness, in which case nothing in harp's TLS could
        // work either.
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .expect("the operating system provides random bytes");
        BasicAuthKey { key }
    }

    /// The digest to cache under, or `None` when the answer may depend on more than the
    /// `Authorization` header: any `Cookie` header (Nextcloud also reads cookies other than the
    /// session passphrase) or no `Authorization` at all.
    pub(crate) fn digest(&self, app_lower: &str, headers: &HeaderMap) -> Option<BasicDigest> {
        if headers.contains_key(COOKIE) {
            return None;
        }
        let mut values = headers.get_all(AUTHORIZATION).iter().peekable();
        values.peek()?;
        let mut h = SipHasher13::new_with_key(&self.key);
        // Length prefixes keep (app, values) unambiguous: "a" + "bc" never collides with "ab" + "c".
        h.write(&(app_lower.len() as u64).to_be_bytes());
        h.write(app_lower.as_bytes());
        for value in values {
            h.write(&(value.len() as u64).to_be_bytes());
            h.write(value.as_bytes());
        }
        Some(BasicDigest(h.finish128().as_u128()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn only_authorization_without_cookie_is_keyed() {
        let key = BasicAuthKey::random();
        let auth = [("authorization", "Basic YTpi")];
        assert!(key.digest("app", &headers(&auth)).is_some());
        assert!(key.digest("app", &headers(&[])).is_none());
        assert!(key
            .digest(
                "app",
                &headers(&[("authorization", "Basic YTpi"), ("cookie", "x=1")])
            )
            .is_none());
    }

    #[test]
    fn digests_separate_credentials_apps_and_processes() {
        let key = BasicAuthKey::random();
        let a = headers(&[("authorization", "Basic YTpi")]);
        let b = headers(&[("authorization", "Basic YTpj")]);
        assert!(key.digest("app", &a) == key.digest("app", &a));
        assert!(key.digest("app", &a) != key.digest("app", &b));
        assert!(key.digest("app", &a) != key.digest("ap", &a));
        let two = headers(&[("authorization", "Basic YTpi"), ("authorization", "x")]);
        assert!(key.digest("app", &a) != key.digest("app", &two));
        assert!(
            key.digest("app", &a) != BasicAuthKey::random().digest("app", &a),
            "another key (another run) gives another digest"
        );
    }
}
