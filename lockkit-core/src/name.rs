//! Lock names, checked once before any backend sees them.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// The longest lock name accepted, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 1024;

/// The namespace (key prefix) used when a configuration names none.
pub const DEFAULT_NAMESPACE: &str = "lockkit";

/// The longest namespace accepted, in bytes of UTF-8.
pub const MAX_NAMESPACE_BYTES: usize = 256;

/// Checks a namespace — the prefix that keeps one application's locks apart
/// from another's on a shared server: not empty, at most
/// [`MAX_NAMESPACE_BYTES`] bytes, no control characters.
///
/// The refusal is a [`Config`](crate::ErrorKind::Config) error naming the
/// field `namespace`, raised by `backend`.
pub fn check_namespace(namespace: &str, backend: &'static str) -> Result<()> {
    let refuse = |why: String| Err(Error::new(crate::ErrorKind::Config, backend, why));
    if namespace.is_empty() {
        return refuse("namespace is empty".to_owned());
    }
    if namespace.len() > MAX_NAMESPACE_BYTES {
        return refuse(format!(
            "namespace is {} bytes long; the limit is {MAX_NAMESPACE_BYTES} bytes",
            namespace.len()
        ));
    }
    if namespace.chars().any(char::is_control) {
        return refuse("namespace contains a control character".to_owned());
    }
    Ok(())
}

/// The longest timeout a backend accepts: one day. Longer ones are no
/// bound in practice, and an instant that far ahead may not exist.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Checks a backend's timeouts: each must be greater than zero (a zero
/// would fail every request, or mean "wait forever" to some servers) and
/// at most [`MAX_TIMEOUT`].
///
/// The refusal is a [`Config`](crate::ErrorKind::Config) error naming the
/// first field out of range, raised by `backend`.
pub fn check_timeouts(
    timeouts: &[(&str, std::time::Duration)],
    backend: &'static str,
) -> Result<()> {
    for (field, timeout) in timeouts {
        let why = if timeout.is_zero() {
            format!("{field} must be greater than zero")
        } else if *timeout > MAX_TIMEOUT {
            format!("{field} {timeout:?} is longer than the most accepted, {MAX_TIMEOUT:?}")
        } else {
            continue;
        };
        return Err(Error::new(crate::ErrorKind::Config, backend, why));
    }
    Ok(())
}

/// A lock name that has passed validation: not empty, at most
/// [`MAX_NAME_BYTES`] bytes, and free of control characters.
///
/// Any other text is accepted — Unicode, `/`, `:`, spaces — and each backend
/// maps it into its key space without ambiguity. Clones share the text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockName(Arc<str>);

impl LockName {
    /// Validates `name`; on refusal the error is [`InvalidInput`](crate::ErrorKind::InvalidInput)
    /// and its message names the field `name` and the rule broken.
    pub fn new(name: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::invalid_input("lockkit", "lock name is empty"));
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(Error::invalid_input(
                "lockkit",
                format!(
                    "lock name is {} bytes long; the limit is {MAX_NAME_BYTES} bytes",
                    name.len()
                ),
            ));
        }
        if let Some((at, found)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Err(Error::invalid_input(
                "lockkit",
                format!(
                    "lock name contains the control character {:?} at byte {at}",
                    found
                ),
            ));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn refusal(name: &str) -> String {
        let error = LockName::new(name).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        error.message().to_owned()
    }

    #[test]
    fn empty_long_and_control_names_are_refused_naming_the_field() {
        assert!(refusal("").contains("lock name is empty"));
        assert!(refusal(&"x".repeat(MAX_NAME_BYTES + 1)).contains("1025 bytes"));
        assert!(refusal("job\n7").contains("control character '\\n' at byte 3"));
        assert!(refusal("nul\0").contains("lock name"));
        assert!(refusal("del\u{7f}").contains("lock name"));
    }

    #[test]
    fn unusual_but_printable_names_are_accepted() {
        for name in ["billing:user-42", "a/b/c", "with spaces", "ключ 🔒", "x"] {
            assert_eq!(LockName::new(name).unwrap().as_str(), name);
        }
        let longest = "é".repeat(MAX_NAME_BYTES / 2);
        assert!(LockName::new(&longest).is_ok());
    }
}
