//! `next_batch` / `since` tokens: an opaque string over one stream position.

use std::fmt;

use crate::error::{Error, Result};

/// A position in the user's stream, as handed to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncToken(pub u64);

impl SyncToken {
    /// Parse a token a client sent back; `M_INVALID_PARAM` if it is not one of ours.
    pub fn parse(raw: &str) -> Result<Self> {
        raw.strip_prefix('s')
            .and_then(|n| n.parse().ok())
            .map(SyncToken)
            .ok_or_else(|| Error::invalid_param(format!("'{raw}' is not a sync token of this server")))
    }
}

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let t = SyncToken(42);
        assert_eq!(SyncToken::parse(&t.to_string()).expect("ours"), t);
        assert!(SyncToken::parse("42").is_err());
        assert!(SyncToken::parse("s-1").is_err());
        assert!(SyncToken::parse("sx").is_err());
    }
}
