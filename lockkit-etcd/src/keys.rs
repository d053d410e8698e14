//! Where a lock lives in etcd's key space: the layout of etcd's own
//! `concurrency.Mutex`, so `etcdctl lock` and Go clients queue with lockkit.

use lockkit_core::LockName;

/// A namespace or lock name as one key segment: `%` and `/` are
/// percent-encoded (`%25`, `%2F`), every other byte is kept. So no name's
/// queue prefix is inside another's — `a` and `a/b` would otherwise share
/// keys — and a name without `/` or `%` is spelt as it is.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            other => out.push(other),
        }
    }
    out
}

/// The prefix every lock key of `namespace` starts with: `<namespace>/`.
pub fn namespace_prefix(namespace: &str) -> String {
    format!("{}/", segment(namespace))
}

/// The queue of `name`: `<namespace>/<name>/`. Every key under it is a
/// holder or waiter, in the order of its create revision — lockkit's,
/// `etcdctl lock <namespace>/<name>`'s and Go's `concurrency.NewMutex(s,
/// "<namespace>/<name>")`'s alike.
pub fn queue_prefix(namespace: &str, name: &LockName) -> String {
    format!("{}{}/", namespace_prefix(namespace), segment(name.as_str()))
}

/// The key of one session's place in a queue: the prefix and the session
/// lease's id in lowercase hex, as `concurrency.Mutex` writes it.
pub fn lock_key(queue: &str, lease: i64) -> String {
    format!("{queue}{lease:x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockkit_core::Result;

    #[test]
    fn a_plain_name_keeps_its_spelling() -> Result<()> {
        let queue = queue_prefix("billing", &LockName::new("user-42")?);
        assert_eq!(queue, "billing/user-42/");
        assert_eq!(
            lock_key(&queue, 0x694d_8a1b_2c3d),
            "billing/user-42/694d8a1b2c3d"
        );
        Ok(())
    }

    #[test]
    fn no_queue_is_inside_another() -> Result<()> {
        let names = ["a", "a/b", "a%2Fb", "a/", "%", "b"];
        let namespaces = ["ns", "ns/a", "ns%2Fa"];
        let mut queues = Vec::new();
        for namespace in namespaces {
            for text in names {
                queues.push(queue_prefix(namespace, &LockName::new(text)?));
            }
        }
        for (i, one) in queues.iter().enumerate() {
            for (j, other) in queues.iter().enumerate() {
                if i != j {
                    assert!(!other.starts_with(one.as_str()), "{other} is inside {one}");
                }
            }
        }
        Ok(())
    }
}
