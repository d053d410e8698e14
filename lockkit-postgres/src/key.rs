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
//! `pg_advisory_lock(42)`.
//!
//! Two different names share a key with probability 2⁻⁶⁴ per pair; among
//! `n` names in use at once the chance of any collision is about
//! n² / 2⁶⁵ — about 3·10⁻¹² for a million names. A collision makes two names
//! exclude each other (and share a fencing sequence); it never lets two
//! holders of one name in.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The advisory lock key of `name` in `namespace`, as documented in the
/// crate: `#<integer>` is the integer itself; any other name is the FNV-1a
/// 64-bit hash of `namespace ‖ 0x00 ‖ name`.
///
/// ```
/// use lockkit_postgres::lock_key;
///
/// assert_eq!(lock_key("lockkit", "#42"), 42);
/// assert_ne!(lock_key("lockkit", "billing:7"), lock_key("other", "billing:7"));
/// ```
pub fn lock_key(namespace: &str, name: &str) -> i64 {
    if let Some(key) = explicit_key(name) {
        return key;
    }
    let hash = [namespace.as_bytes(), &[0], name.as_bytes()]
        .into_iter()
        .flatten()
        .fold(FNV_OFFSET, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
        });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// `#<integer>` names an explicit key.
fn explicit_key(name: &str) -> Option<i64> {
    let digits = name.strip_prefix('#')?;
    // `parse` accepts a leading `+`; a key has one spelling only.
    if digits.starts_with('+') {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_64_of_namespace_nul_name() {
        // FNV-1a 64 of the empty input is its offset basis; of "a" a
        // published test vector. The key hashes `ns ‖ 0 ‖ name`.
        let fnv = |bytes: &[u8]| {
            bytes.iter().fold(FNV_OFFSET, |hash, byte| {
                (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME)
            })
        };
        assert_eq!(fnv(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            lock_key("ns", "job"),
            i64::from_ne_bytes(fnv(b"ns\0job").to_ne_bytes())
        );
    }

    #[test]
    fn keys_are_stable_across_releases() {
        // Pinned values: changing them would make old and new clients miss each other.
        assert_eq!(
            lock_key("lockkit", "billing:user-42"),
            -1_446_409_567_475_958_565
        );
        assert_eq!(lock_key("lockkit", "ümlaut / ☃"), 3_540_703_489_814_986_324);
    }

    #[test]
    fn namespace_and_name_cannot_trade_bytes() {
        assert_ne!(lock_key("ab", "c"), lock_key("a", "bc"));
        assert_ne!(lock_key("lockkit", "x"), lock_key("other", "x"));
    }

    #[test]
    fn explicit_keys_are_taken_literally() {
        assert_eq!(lock_key("any", "#0"), 0);
        assert_eq!(lock_key("any", "#-7"), -7);
        assert_eq!(lock_key("any", "#9223372036854775807"), i64::MAX);
        // Not integers: hashed like any other name.
        for name in ["#+7", "#", "#x", "# 7", "#99999999999999999999", "42"] {
            assert_eq!(
                lock_key("any", name),
                i64::from_ne_bytes(
                    [b"any".as_slice(), &[0], name.as_bytes()]
                        .concat()
                        .iter()
                        .fold(FNV_OFFSET, |h, b| (h ^ u64::from(*b))
                            .wrapping_mul(FNV_PRIME))
                        .to_ne_bytes()
                ),
                "{name}"
            );
        }
    }
}
