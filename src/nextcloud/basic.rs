//! The cache key for Basic-auth (app password) requests: an HMAC-SHA256 of the app id and the
//! `Authorization` values under a random key made at start and never shown, so the credential
//! is neither stored nor recoverable from memory, and the digests mean nothing outside this
//! process. Owns only the key derivation; the cache and single flight are `super`'s.

use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use ring::hmac;

/// Which requests may be answered from the Basic-auth cache, and under which digest.
pub(crate) struct BasicAuthKey {
    key: hmac::Key,
}

/// One credential (with its app id) as the cache sees it: 32 bytes that cannot be reversed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct BasicDigest([u8; 32]);

impl BasicAuthKey {
    /// A fresh random key: digests from an earlier run (or another worker process) never match.
    pub(crate) fn random() -> BasicAuthKey {
        let rng = ring::rand::SystemRandom::new();
        // `generate` fails only when the OS has no randomness, in which case nothing in harp's
        // TLS could work either.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
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
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length prefixes keep (app, values) unambiguous: "a" + "bc" never collides with "ab" + "c".
        ctx.update(&(app_lower.len() as u64).to_be_bytes());
        ctx.update(app_lower.as_bytes());
        for value in values {
            ctx.update(&(value.len() as u64).to_be_bytes());
            ctx.update(value.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        Some(BasicDigest(out))
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
