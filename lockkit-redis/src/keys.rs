//! Where one lock lives in Redis.
//!
//! Every key of a lock begins with `<namespace>:{<name>}`, so they all share
//! one hash tag — the text between the first `{` and the next `}` of that
//! common prefix — and a Redis Cluster would keep them in one slot, as a
//! multi-key script requires. That holds whatever the name contains.
//!
//! Hand-overs are announced on a channel per backend instance,
//! `<ns>:grants:<random id>`, which the waiting backend names when it takes
//! a place in a queue; so a message reaches only the client it is for.

/// The keys of one lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockKeys {
    /// `<ns>:{<name>}`: the owner token of the holder, with the lock's TTL.
    pub lock: String,
    /// `<ns>:{<name>}:fence`: the last fencing token granted; never expires.
    pub fence: String,
    /// `<ns>:{<name>}:queue`: waiters' owner tokens, scored by arrival.
    pub queue: String,
    /// `<ns>:{<name>}:waiters`: each waiter's place expiry, TTL and channel.
    pub waiters: String,
}

impl LockKeys {
    /// The keys of lock `name` in `namespace`.
    pub fn new(namespace: &str, name: &str) -> Self {
        // Built on every operation: plain concatenation, exact capacities.
        let mut lock = String::with_capacity(namespace.len() + name.len() + 3);
        lock.push_str(namespace);
        lock.push_str(":{");
        lock.push_str(name);
        lock.push('}');
        let with = |suffix: &str| {
            let mut key = String::with_capacity(lock.len() + suffix.len());
            key.push_str(&lock);
            key.push_str(suffix);
            key
        };
        Self {
            fence: with(":fence"),
            queue: with(":queue"),
            waiters: with(":waiters"),
            lock,
        }
    }

    /// The keys in the order every script takes them (`KEYS[1..=4]`).
    pub fn all(&self) -> [&str; 4] {
        [&self.lock, &self.fence, &self.queue, &self.waiters]
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
            let tag = hash_tag(&keys.lock);
            for key in keys.all() {
                assert_eq!(hash_tag(key), tag, "{name}: {key}");
            }
        }
    }

    #[test]
    fn namespaces_keep_locks_apart() {
        assert_ne!(LockKeys::new("a", "x").lock, LockKeys::new("b", "x").lock);
        assert_eq!(LockKeys::new("app", "job:7").lock, "app:{job:7}");
    }
}
