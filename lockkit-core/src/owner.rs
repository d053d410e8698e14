//! The random owner token that proves which holder a grant belongs to.

use std::fmt;
use std::sync::{Mutex, PoisonError};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha12Rng;

use crate::error::{Error, ErrorKind, Result};

/// 128 random bits identifying one grant's holder.
///
/// Backends store it with the lock and compare it before extending or
/// releasing, so a holder whose lease expired can never release or extend the
/// next holder's lock. A [`Locker`](crate::Locker) draws a fresh token for
/// every acquire from its [`OwnerTokens`] generator.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerToken([u8; 16]);

impl OwnerToken {
    /// A new token of 128 bits straight from the operating system's random
    /// source: one system call per token. [`OwnerTokens`] is the fast path.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 16];
        os_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The token's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The token as 32 lowercase hexadecimal digits, the form backends store.
    pub fn to_hex(&self) -> String {
        // On every acquire, extend and release of a network backend: no
        // formatting machinery, one allocation.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(32);
        for byte in self.0 {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }
}

fn os_random(bytes: &mut [u8]) -> Result<()> {
    getrandom::fill(bytes).map_err(|error| {
        Error::new(
            ErrorKind::Unavailable,
            "lockkit",
            format!("the operating system's random source failed: {error}"),
        )
    })
}

/// A generator of owner tokens: ChaCha12, a cryptographically secure
/// generator, keyed with 256 bits from the operating system's random source
/// at its first token.
///
/// Tokens are as unpredictable as the operating system's, without a system
/// call per acquire (which took a fifth of the memory backend's time).
/// Each [`Locker`](crate::Locker) owns one, shared by its clones: two
/// clients never share a key. A process that forks copies its clients'
/// generators into the child, but only a memory client still works there,
/// and its locks are the child's own; a network client's connections run
/// on the parent's runtime. A client made in the child draws a new key.
pub struct OwnerTokens {
    generator: Mutex<Option<ChaCha12Rng>>,
}

impl OwnerTokens {
    /// A generator that draws its key at its first token.
    pub fn new() -> Self {
        Self {
            generator: Mutex::new(None),
        }
    }

    /// The next token; fails only if the operating system's random source
    /// fails while drawing the key.
    pub fn next(&self) -> Result<OwnerToken> {
        // The generator's state is valid between any two statements: keep
        // serving after a panic elsewhere poisoned the mutex.
        let mut generator = self
            .generator
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let generator = match &mut *generator {
            Some(generator) => generator,
            empty => {
                let mut key = [0u8; 32];
                os_random(&mut key)?;
                empty.insert(ChaCha12Rng::from_seed(key))
            }
        };
        let mut bytes = [0u8; 16];
        generator.fill_bytes(&mut bytes);
        Ok(OwnerToken(bytes))
    }
}

impl Default for OwnerTokens {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for OwnerTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the key.
        f.write_str("OwnerTokens")
    }
}

impl fmt::Display for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerToken({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_and_print_as_32_hex_digits() {
        let first = OwnerToken::generate().unwrap();
        let second = OwnerToken::generate().unwrap();
        assert_ne!(first, second);
        let hex = first.to_hex();
        assert_eq!(hex.len(), 32);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(OwnerToken([0xab; 16]).to_hex(), "ab".repeat(16));
        assert_eq!(OwnerToken([0x0f; 16]).to_string(), "0f".repeat(16));
    }

    #[test]
    fn generators_draw_distinct_keys_and_never_repeat_a_token() {
        let (first, second) = (OwnerTokens::new(), OwnerTokens::new());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(first.next().unwrap()));
            assert!(seen.insert(second.next().unwrap()));
        }
        assert!(seen.iter().all(|token| token.as_bytes() != &[0; 16]));
    }
}
