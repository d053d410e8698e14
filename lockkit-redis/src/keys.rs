//! Where one lock lives in Redis. Public, with [`scripts`](crate::scripts)
//! and [`node`](crate::node), as the interface Redlock and the benchmark
//! build on.
//!
//! Every key of a lock begins with `<namespace>:{<name>}`, so they all share
//! one hash tag — the text between the first `{` and the next `}` of that
//! common prefix — and a Redis Cluster would keep them in one slot, as a
//! multi-key script requires. That holds whatever the name contains.
//!
//! Hand-overs are announced on a channel per backend instance,
//! `<ns>:grants:<random id>`, which the waiting backend names when it takes
//! a place in a queue; so a message reaches only the client it is for.

/// The keys of one lock, in one buffer (built on every operation: one
/// allocation, not four).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKeys {
    /// The four keys, back to back, in the order of [`all`](Self::all).
    buffer: String,
    /// Where each key ends in `buffer`.
    ends: [usize; 4],
}

impl LockKeys {
    /// The keys of lock `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        const SUFFIXES: [&str; 3] = [":fence", ":queue", ":waiters"];
        let lock_len = namespace.len() + name.len() + 3;
        let mut buffer = String::with_capacity(4 * lock_len + 20);
        buffer.push_str(namespace);
        buffer.push_str(":{");
        buffer.push_str(name);
        buffer.push('}');
        let mut ends = [lock_len; 4];
        for (index, suffix) in SUFFIXES.iter().enumerate() {
            buffer.extend_from_within(..lock_len);
            buffer.push_str(suffix);
            ends[index + 1] = buffer.len();
        }
        Self { buffer, ends }
    }

    /// `<ns>:{<name>}`: the owner token of the holder, with the lock's TTL.
    pub fn lock(&self) -> &str {
        &self.buffer[..self.ends[0]]
    }

    /// `<ns>:{<name>}:fence`: the last fencing token granted; never expires.
    pub fn fence(&self) -> &str {
        &self.buffer[self.ends[0]..self.ends[1]]
    }

    /// `<ns>:{<name>}:queue`: waiters' owner tokens, scored by arrival.
    pub fn queue(&self) -> &str {
        &self.buffer[self.ends[1]..self.ends[2]]
    }

    /// `<ns>:{<name>}:waiters`: each waiter's place expiry, TTL and channel.
    pub fn waiters(&self) -> &str {
        &self.buffer[self.ends[2]..self.ends[3]]
    }

    /// `<ns>:{<name>}:released`: the channel a Redlock release is announced
    /// on, for the waiters of this lock (a channel, not a key).
    pub fn released_channel(&self) -> String {
        format!("{}:released", self.lock())
    }

    /// `<ns>:{<name>}:watched`: set, with a TTL, while Redlock waiters listen
    /// on [`released_channel`](Self::released_channel); a release announces
    /// itself only then.
    pub fn watched(&self) -> String {
        format!("{}:watched", self.lock())
    }

    /// The keys in the order every script takes them (`KEYS[1..=4]`).
    pub fn all(&self) -> [&str; 4] {
        [self.lock(), self.fence(), self.queue(), self.waiters()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + 1 + key[open + 1..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn all_keys_of_a_lock_share_one_hash_tag_whatever_the_name() {
        for name in ["billing:42", "a}b", "{x}", "}", "über/ü {}"] {
            let keys = LockKeys::new("app", name);
            let tag = hash_tag(keys.lock());
            for key in keys.all() {
                assert_eq!(hash_tag(key), tag, "{name}: {key}");
            }
        }
    }

    #[test]
    fn namespaces_keep_locks_apart() {
        assert_ne!(
            LockKeys::new("a", "x").lock(),
            LockKeys::new("b", "x").lock()
        );
        assert_eq!(
            LockKeys::new("app", "job:7").all(),
            [
                "app:{job:7}",
                "app:{job:7}:fence",
                "app:{job:7}:queue",
                "app:{job:7}:waiters"
            ]
        );
    }
}
