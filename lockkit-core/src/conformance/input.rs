//! Input: every printable name works; bad names and durations are refused before I/O.

use std::time::Duration;

use super::{expect_error, unique_name, Target, Timing};
use crate::{Acquire, ErrorKind, MAX_NAME_BYTES};

/// Unicode, separators, spaces, glob and format characters and a
/// 1,024-byte name all work — and names differing only in them stay distinct.
pub async fn unusual_names_work(target: &impl Target) {
    let (first, second) = (target.client().await, target.client().await);
    let options = Acquire::ttl(Timing::of(&first).long_ttl);
    let base = unique_name("names");
    let mut names: Vec<String> = [
        "ключ/🔒",
        "a/b",
        "a:b",
        "a/b/",
        "with spaces",
        "{tag}",
        "*?[x]",
        "%s%n",
        "\\",
        "'\"",
        "...",
    ]
    .iter()
    .map(|suffix| format!("{base}:{suffix}"))
    .collect();
    names.push(longest_name(&base, 'x'));
    names.push(longest_name(&base, 'é'));
    let mut leases = Vec::new();
    for name in &names {
        let lease = first.try_acquire(name, options).await.unwrap();
        leases.push(lease.unwrap_or_else(|| panic!("{name:?} was taken by a similar name")));
        assert!(
            second.try_acquire(name, options).await.unwrap().is_none(),
            "{name:?} was not exclusive"
        );
    }
    for lease in leases {
        lease.release().await.unwrap();
    }
}

/// `base` filled with `filler` up to the longest accepted length in bytes.
fn longest_name(base: &str, filler: char) -> String {
    let mut name = format!("{base}:{filler}");
    while name.len() + filler.len_utf8() <= MAX_NAME_BYTES {
        name.push(filler);
    }
    name
}

/// Empty, over-long and control-character names are `InvalidInput` naming the lock name.
pub async fn invalid_names_are_refused(target: &impl Target) {
    let locks = target.client().await;
    let options = Acquire::ttl(Timing::of(&locks).long_ttl);
    let too_long = "x".repeat(MAX_NAME_BYTES + 1);
    for name in [
        "",
        too_long.as_str(),
        "line\nbreak",
        "nul\0",
        "tab\tbed",
        "esc\u{1b}[0m",
        "del\u{7f}",
    ] {
        let error = expect_error(
            locks.try_acquire(name, options).await,
            ErrorKind::InvalidInput,
            name,
        );
        assert!(
            error.message().contains("lock name"),
            "error does not name the field: {error}"
        );
        let error = expect_error(
            locks.acquire(name, options).await,
            ErrorKind::InvalidInput,
            name,
        );
        assert!(
            error.message().contains("lock name"),
            "error does not name the field: {error}"
        );
        let outcome = locks.with_lock(name, options, |_| async {}).await;
        expect_error(outcome, ErrorKind::InvalidInput, name);
    }
}

/// Zero, too short, too long and overflowing TTLs, and bad renewal settings,
/// are `InvalidInput` naming the field.
pub async fn invalid_durations_are_refused(target: &impl Target) {
    let locks = target.client().await;
    let capabilities = locks.capabilities().clone();
    let timing = Timing::of(&locks);
    let name = unique_name("durations");
    let mut refused: Vec<(Acquire, &str)> = vec![
        (Acquire::ttl(Duration::ZERO), "ttl"),
        (Acquire::ttl(Duration::MAX), "ttl"),
        (
            Acquire::ttl(capabilities.max_ttl + Duration::from_millis(1)),
            "ttl",
        ),
        (
            Acquire::ttl(timing.ttl).renew_every(Duration::ZERO),
            "renew_every",
        ),
        (
            Acquire::ttl(timing.ttl).renew_every(timing.ttl),
            "renew_every",
        ),
        (
            Acquire::ttl(timing.ttl).max_hold(Duration::ZERO),
            "max_hold",
        ),
    ];
    if capabilities.min_ttl > Duration::from_nanos(1) {
        refused.push((
            Acquire::ttl(capabilities.min_ttl - Duration::from_nanos(1)),
            "ttl",
        ));
    }
    if capabilities.lease == crate::LeaseModel::Session || !capabilities.extend {
        refused.retain(|(_, field)| *field == "ttl");
    }
    for (options, field) in refused {
        let error = expect_error(
            locks.try_acquire(&name, options).await,
            ErrorKind::InvalidInput,
            field,
        );
        assert!(
            error.message().contains(field),
            "error does not name `{field}`: {error}"
        );
    }
    let lease = locks
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    if capabilities.extend {
        let error = expect_error(
            lease.extend(Duration::ZERO).await,
            ErrorKind::InvalidInput,
            "extend(0)",
        );
        assert!(error.message().contains("ttl"));
        expect_error(
            lease.extend(Duration::MAX).await,
            ErrorKind::InvalidInput,
            "extend(MAX)",
        );
    }
    lease.release().await.unwrap();
}
