//! The random owner token that proves which holder a grant belongs to.

use std::fmt;

use crate::error::{Error, ErrorKind, Result};

/// 128 random bits identifying one grant's holder.
///
/// Backends store it with the lock and compare it before extending or
/// releasing, so a holder whose lease expired can never release or extend the
/// next holder's lock. A fresh token is drawn from the operating system's
/// cryptographic random source for every acquire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct OwnerToken([u8; 16]);

impl OwnerToken {
    /// A new token of 128 bits from the operating system's random source.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|error| {
            Error::new(
                ErrorKind::Unavailable,
                "lockkit",
                format!("the operating system's random source failed: {error}"),
            )
        })?;
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
}
