//! An ExApp route (contract §3.2) with its pattern compiled once per metadata record, with
//! Python `re.match` semantics (contract §2.7): anchored at the start only, case-sensitive.
//!
//! The `regex` crate (linear time, fast) handles almost every real pattern; `fancy-regex`
//! (backtracking) takes the rest, which is what look-around and back-references need.
//! Choosing among routes (first match decides) is `pipeline::routes`' job.

use std::fmt;

enum Matcher {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

pub struct CompiledRoute {
    pub source: String,
    pub access_level: u8,
    pub bruteforce: Vec<u16>,
    matcher: Option<Matcher>,
}

impl fmt::Debug for CompiledRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledRoute")
            .field("url", &self.source)
            .field("access_level", &self.access_level)
            .field("valid", &self.matcher.is_some())
            .finish()
    }
}

impl CompiledRoute {
    /// Compiles `pattern`; an invalid one is kept (and skipped when matching) with a warning.
    pub fn new(pattern: &str, access_level: u8, bruteforce: Vec<u16>) -> CompiledRoute {
        let anchored = format!(r"\A(?:{pattern})");
        let matcher = match regex::Regex::new(&anchored) {
            Ok(re) => Some(Matcher::Linear(re)),
            Err(_) => match fancy_regex::Regex::new(&anchored) {
                Ok(re) => Some(Matcher::Backtracking(re)),
                Err(e) => {
                    tracing::warn!(route = pattern, error = %e, "invalid route pattern is skipped");
                    None
                }
            },
        };
        CompiledRoute {
            source: pattern.to_string(),
            access_level,
            bruteforce,
            matcher,
        }
    }

    pub fn is_valid(&self) -> bool {
        self.matcher.is_some()
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Some(Matcher::Linear(re)) => re.is_match(path),
            // A pattern that exhausts the backtracking limit counts as not matching.
            Some(Matcher::Backtracking(re)) => re.is_match(path).unwrap_or(false),
            None => false,
        }
    }
}
