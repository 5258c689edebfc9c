//! The shared key: compared in constant time, never printed.

use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct SharedKey(Arc<str>);

impl SharedKey {
    pub fn new(key: &str) -> SharedKey {
        SharedKey(Arc::from(key))
    }

    /// Constant-time equality (only the length can leak, which the reference leaks too).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(candidate).into()
    }

    /// The key itself, for the few places that must send it (Nextcloud calls, FRP login check).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// What logs and `harp check` show instead of the key.
    pub fn masked(&self) -> String {
        format!("******** ({} characters)", self.0.len())
    }
}

impl fmt::Debug for SharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedKey(********)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_exact_key() {
        let k = SharedKey::new("secret");
        assert!(k.matches(b"secret"));
        assert!(!k.matches(b"secreT"));
        assert!(!k.matches(b"secret "));
        assert!(!k.matches(b""));
        assert!(!format!("{k:?}").contains("secret"));
        assert!(!k.masked().contains("secret"));
    }
}
