//! The fencing token a protected resource uses to reject a stale holder.

use std::fmt;
use std::num::NonZeroU64;

/// A number attached to every grant of a lock: never 0, and strictly greater
/// than the token of every earlier grant of the same name.
///
/// A resource that records the highest token it has seen and refuses writes
/// carrying a lower one cannot be corrupted by a holder whose lease expired
/// while it was paused. How far the ordering reaches (across failover and
/// restart, or only while the server's data survives) is stated by
/// [`Capabilities::fencing`](crate::Capabilities::fencing).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(NonZeroU64);

impl FencingToken {
    /// The token with value `value`, or `None` for 0, which is never a valid token.
    pub fn new(value: u64) -> Option<Self> {
        NonZeroU64::new(value).map(Self)
    }

    /// The token's value, at least 1.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FencingToken({})", self.0)
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> Self {
        token.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_never_a_token() {
        assert!(FencingToken::new(0).is_none());
        assert_eq!(FencingToken::new(7).unwrap().get(), 7);
        assert!(FencingToken::new(2) > FencingToken::new(1));
    }
}
