//! Where a lock lives in ZooKeeper's tree: the layout of Curator's
//! `InterProcessMutex`, so Curator and `zookeeper-client`'s Curator-prefixed
//! lock queue with lockkit on the same name.
//!
//! ```text
//! <chroot>/<namespace>/<name>/_c_<guid>-lock-<sequence>
//! ```
//!
//! `<namespace>` and `<name>` are each one znode name, written by
//! [`segment`] and read back by [`unsegment`]; the lock node's name is
//! Curator's protected name: `_c_`, a fresh GUID, `-lock-`, and the
//! ten-digit sequence the server appends.

use lockkit_core::LockName;

/// What Curator's protection mode puts before the GUID (`_c_`).
pub const PROTECTED_PREFIX: &str = "_c_";

/// The lock name `InterProcessMutex` uses between the GUID and the
/// sequence (`-lock-`, as Curator's `LOCK_NAME` "lock-" after its dash).
pub const LOCK_NAME: &str = "lock-";

/// A namespace or lock name as one znode name, and back with [`unsegment`].
///
/// ZooKeeper refuses in a path: `.` and `..` as a whole name, the empty
/// name, `/` inside one, the characters `U+0000`–`U+001F`,
/// `U+007F`–`U+009F`, `U+D800`–`U+F8FF` and `U+FFF0`–`U+FFFF` (its
/// `PathUtils.validatePath`, which checks UTF-16 code units: so every
/// character beyond `U+FFFF`, written as a surrogate pair, too); and
/// `/zookeeper` is its own. Each of those characters, and `%`, is written
/// as the percent-encoding of its UTF-8 bytes (`/` → `%2F`, `😀` →
/// `%F0%9F%98%80`); the whole names `.`, `..` and `zookeeper` are written
/// `%2E`, `%2E%2E` and `%7Aookeeper`. Every other character is kept, so a
/// name without any of these is spelt as it is — and only such a name
/// queues with Curator's lock of the same path.
pub fn segment(text: &str) -> String {
    match text {
        "." => return "%2E".to_owned(),
        ".." => return "%2E%2E".to_owned(),
        "zookeeper" => return "%7Aookeeper".to_owned(),
        _ => {}
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '%' || c == '/' || refused(c) {
            let mut bytes = [0; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether ZooKeeper takes `name` as one znode name: not empty, not `.`
/// or `..`, and without `/` or a character it refuses (see [`segment`]).
pub(crate) fn is_znode_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.chars().any(|c| c == '/' || refused(c))
}

/// Whether ZooKeeper refuses `c` in a path (see [`segment`]).
fn refused(c: char) -> bool {
    matches!(u32::from(c),
        0x0000..=0x001F | 0x007F..=0x009F | 0xD800..=0xF8FF | 0xFFF0..=0xFFFF | 0x10000..)
}

/// The text a [`segment`] was made from; `None` for a znode name no
/// segment is (a bad escape, or a character `segment` would have escaped).
pub fn unsegment(segment_text: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(segment_text)
        .decode_utf8()
        .ok()?
        .into_owned();
    (segment(&decoded) == segment_text).then_some(decoded)
}

/// The node every lock of `namespace` lives under: `/<namespace>`.
pub fn namespace_path(namespace: &str) -> String {
    format!("/{}", segment(namespace))
}

/// The node a lock's queue lives under: `/<namespace>/<name>`, a
/// container node. Every child of it whose name holds `lock-` followed by
/// a sequence is a holder or waiter, in sequence order — lockkit's and
/// Curator's `InterProcessMutex(client, "/<namespace>/<name>")`'s alike.
pub fn lock_path(namespace: &str, name: &LockName) -> String {
    format!("{}/{}", namespace_path(namespace), segment(name.as_str()))
}

/// The path a lock node is created at, under `parent`, for the GUID
/// `guid`: the server appends the sequence.
pub fn node_prefix(parent: &str, guid: &str) -> String {
    format!("{parent}/{PROTECTED_PREFIX}{guid}-{LOCK_NAME}")
}

/// The sequence of a child named as a lock node (anything holding
/// `lock-` followed by digits at its end, as Curator sorts them); `None`
/// for a child that is no lock node.
pub fn sequence_of(child: &str) -> Option<i64> {
    let (_, digits) = child.rsplit_once(LOCK_NAME)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockkit_core::Result;

    #[test]
    fn a_plain_name_keeps_its_spelling() -> Result<()> {
        let path = lock_path("billing", &LockName::new("user-42:eu")?);
        assert_eq!(path, "/billing/user-42:eu");
        assert_eq!(
            node_prefix(&path, "1b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            "/billing/user-42:eu/_c_1b4e28ba-2fa1-11d2-883f-0016d3cca427-lock-"
        );
        Ok(())
    }

    #[test]
    fn every_name_maps_to_one_znode_name_and_back() -> std::result::Result<(), String> {
        let long = "é/".repeat(340);
        let names = [
            "a",
            "a/b",
            "/",
            "a%2Fb",
            "%",
            ".",
            "..",
            "...",
            "zookeeper",
            "zookeeper2",
            "%7Aookeeper",
            "%2E",
            "naïve 名前",
            "😀 emoji",
            "\u{E000}private",
            "\u{FFF5}",
            "\u{0085}next-line",
            "tab\there",
            long.as_str(),
        ];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let written = segment(name);
            assert!(
                !written.is_empty() && !written.contains('/'),
                "{name:?} → {written:?}"
            );
            assert!(!matches!(written.as_str(), "." | ".." | "zookeeper"));
            assert!(
                !written.chars().any(refused),
                "{name:?} → {written:?} keeps a refused character"
            );
            assert_eq!(unsegment(&written).as_deref(), Some(name), "{written}");
            if !seen.insert(written.clone()) {
                return Err(format!("{name:?} shares {written:?} with another name"));
            }
        }
        for not_a_segment in ["%2e", "%zz", "%", "a/b", "%61", "%FF"] {
            assert_eq!(unsegment(not_a_segment), None, "{not_a_segment}");
        }
        Ok(())
    }

    #[test]
    fn lock_nodes_are_read_as_curator_sorts_them() {
        assert_eq!(
            sequence_of("_c_1b4e28ba-2fa1-11d2-883f-0016d3cca427-lock-0000000042"),
            Some(42)
        );
        assert_eq!(sequence_of("lock-0000000007"), Some(7));
        assert_eq!(sequence_of("_c_x-lock-"), None);
        assert_eq!(sequence_of("lease-0000000001"), None);
        assert_eq!(sequence_of("_c_x-lock-00a1"), None);
    }
}
