//! Lock name → PostgreSQL advisory lock key.
//!
//! An advisory lock is named by one signed 64-bit integer. lockkit derives
//! it from the namespace and the name with **FNV-1a, 64-bit**, over the
//! bytes `namespace ‖ 0x00 ‖ name` (UTF-8), read as a two's-complement
//! `i64`. The algorithm is fixed: it never depends on the PostgreSQL version
//! (unlike `hashtext`) or on the Rust version (unlike `DefaultHasher`), so
//! every release of lockkit, and any program that computes the same hash,
//! contends on the same key. The `0x00` separator cannot occur in a
//! namespace, so no two (namespace, name) pairs hash the same bytes.
//!
//! A name written `#<integer>` (`#42`, `#-7`) is that integer itself, with
//! no namespace: the way to contend with existing code that calls
//! `pg_advisory_lock(42)`. An integer has one spelling only — no leading
//! zeros, no `+`, no `-0` — so that two different names never share a lock:
//! `#042`, `#+42`, `#-07` and `#-0` are refused with `InvalidInput` naming
//! the canonical spelling, and so is an integer outside the `i64` range.
//! Any other name starting with `#` (`#x`, `# 7`) is hashed like any name.
//!
//! Two different names share a key with probability 2⁻⁶⁴ per pair; among
//! `n` names in use at once the chance of any collision is about
//! n² / 2⁶⁵ — about 3·10⁻¹² for a million names. A collision makes two names
//! exclude each other (and share a fencing sequence); it never lets two
//! holders of one name in.

use lockkit_core::{Error, Result};

use crate::error::BACKEND;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The advisory lock key of `name` in `namespace`, as documented in the
/// crate: `#<integer>` is the integer itself; any other name is the FNV-1a
/// 64-bit hash of `namespace ‖ 0x00 ‖ name`.
///
/// Fails with `InvalidInput` for an integer written other than in its one
/// canonical spelling (`#042` → write `#42`) or outside the `i64` range.
///
/// ```
/// use lockkit_postgres::lock_key;
///
/// assert_eq!(lock_key("lockkit", "#42")?, 42);
/// assert!(lock_key("lockkit", "#042").is_err());
/// assert_ne!(lock_key("lockkit", "billing:7")?, lock_key("other", "billing:7")?);
/// # Ok::<(), lockkit_core::Error>(())
/// ```
pub fn lock_key(namespace: &str, name: &str) -> Result<i64> {
    if let Some(key) = explicit_key(name)? {
        return Ok(key);
    }
    let hash = [namespace.as_bytes(), &[0], name.as_bytes()]
        .into_iter()
        .flatten()
        .fold(FNV_OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
        });
    Ok(i64::from_ne_bytes(hash.to_ne_bytes()))
}

/// `#<integer>` names an explicit key, in its canonical spelling only.
fn explicit_key(name: &str) -> Result<Option<i64>> {
    let Some(number) = name.strip_prefix('#') else {
        return Ok(None);
    };
    let digits = number.strip_prefix(['-', '+']).unwrap_or(number);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(None);
    }
    let Ok(key) = number.parse::<i64>() else {
        return Err(Error::invalid_input(
            BACKEND,
            format!(
                "lock name `{name}`: an explicit key must lie in {}..={}",
                i64::MIN,
                i64::MAX
            ),
        ));
    };
    let canonical = format!("#{key}");
    if canonical != name {
        // `#042` and `#42` would be one lock under two names.
        return Err(Error::invalid_input(
            BACKEND,
            format!(
                "lock name `{name}` spells the explicit key {key} with a sign or leading zero; \
                 a key has one spelling: write `{canonical}`"
            ),
        ));
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(FNV_OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
        })
    }

    #[test]
    fn the_hash_is_fnv1a_64_of_namespace_nul_name() {
        // FNV-1a 64 of the empty input is its offset basis; of "a" a
        // published test vector. The key hashes `ns ‖ 0 ‖ name`.
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            lock_key("ns", "job").unwrap(),
            i64::from_ne_bytes(fnv(b"ns\0job").to_ne_bytes())
        );
    }

    #[test]
    fn keys_are_stable_across_releases() {
        // Pinned values: changing them would make old and new clients miss each other.
        assert_eq!(
            lock_key("lockkit", "billing:user-42").unwrap(),
            -1_446_409_567_475_958_565
        );
        assert_eq!(
            lock_key("lockkit", "ümlaut / ☃").unwrap(),
            3_540_703_489_814_986_324
        );
    }

    #[test]
    fn namespace_and_name_cannot_trade_bytes() {
        assert_ne!(lock_key("ab", "c").unwrap(), lock_key("a", "bc").unwrap());
        assert_ne!(
            lock_key("lockkit", "x").unwrap(),
            lock_key("other", "x").unwrap()
        );
    }

    #[test]
    fn explicit_keys_are_taken_literally() {
        assert_eq!(lock_key("any", "#0").unwrap(), 0);
        assert_eq!(lock_key("any", "#-7").unwrap(), -7);
        assert_eq!(lock_key("any", "#9223372036854775807").unwrap(), i64::MAX);
        assert_eq!(lock_key("any", "#-9223372036854775808").unwrap(), i64::MIN);
        // Not integers: hashed like any other name.
        for name in ["#", "#x", "# 7", "#7 ", "#-", "#1e3", "42"] {
            let bytes = [b"any".as_slice(), &[0], name.as_bytes()].concat();
            assert_eq!(
                lock_key("any", name).unwrap(),
                i64::from_ne_bytes(fnv(&bytes).to_ne_bytes()),
                "{name}"
            );
        }
    }

    #[test]
    fn an_explicit_key_has_one_spelling() {
        for (name, canonical) in [
            ("#042", "`#42`"),
            ("#00", "`#0`"),
            ("#+42", "`#42`"),
            ("#-07", "`#-7`"),
            ("#-0", "`#0`"),
        ] {
            let error = lock_key("any", name).unwrap_err();
            assert_eq!(error.kind(), lockkit_core::ErrorKind::InvalidInput);
            assert!(error.message().contains(canonical), "{error}");
            assert!(error.message().contains("lock name"), "{error}");
        }
        for name in [
            "#9223372036854775808",
            "#99999999999999999999999999999999999999999",
        ] {
            let error = lock_key("any", name).unwrap_err();
            assert_eq!(
                error.kind(),
                lockkit_core::ErrorKind::InvalidInput,
                "{name}"
            );
        }
    }
}
