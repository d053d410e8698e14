//! Reading a lock's state: free, or its holder, without taking it.

use std::time::{Duration, SystemTime};

use super::{expect_error, unique_name, Target, Timing};
use crate::{Acquire, ErrorKind, Expiry, LeaseModel, LockStatus, Locker};

/// [`Locker::status`] reads a held lock's holder from another client — its
/// token, remaining TTL or session, and grant time where the backend keeps
/// them — without taking it, reads `Free` for a free name, a released lock
/// and a look-alike name, and refuses a bad name; a backend without
/// [`Capabilities::status`](crate::Capabilities::status) says `Unsupported`.
pub async fn status_reports_the_holder_without_taking_the_lock(target: &impl Target) {
    let holder = target.client().await;
    let reader = target.client().await;
    let timing = Timing::of(&holder);
    let name = unique_name("status");
    if !reader.capabilities().status {
        expect_error(
            reader.status(&name).await,
            ErrorKind::Unsupported,
            "status on a backend without it",
        );
        return;
    }
    expect_error(
        reader.status("").await,
        ErrorKind::InvalidInput,
        "status of an empty name",
    );
    assert_eq!(reader.status(&name).await.unwrap(), LockStatus::Free);

    let before = SystemTime::now();
    let lease = holder
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let status = reader.status(&name).await.unwrap();
    let Some(read) = status.holder() else {
        panic!("a held lock read as {status:?}");
    };
    if let Some(token) = read.token {
        assert_eq!(token, lease.fencing_token(), "status read another token");
    }
    match (reader.capabilities().lease, read.expiry) {
        (LeaseModel::Ttl, Expiry::In(left)) => assert!(
            left <= timing.long_ttl && left > timing.long_ttl / 2,
            "a lock taken for {:?} has {left:?} left",
            timing.long_ttl
        ),
        (LeaseModel::Session, Expiry::Session) => {}
        (model, expiry) => panic!("a {model:?} grant read as expiring {expiry:?}"),
    }
    let slack = Duration::from_secs(5);
    if let Some(since) = read.since {
        assert!(
            since + slack >= before && since <= SystemTime::now() + slack,
            "granted at {since:?}, outside the acquire"
        );
    }
    if let Some(queued) = read.queued_since {
        assert!(
            queued + slack >= before && queued <= SystemTime::now() + slack,
            "queued at {queued:?}, outside the acquire"
        );
    }
    let look_alike = format!("{name}:other");
    assert_eq!(reader.status(&look_alike).await.unwrap(), LockStatus::Free);
    assert!(
        reader
            .try_acquire(&name, Acquire::ttl(timing.long_ttl))
            .await
            .unwrap()
            .is_none(),
        "the lock was free for another client after status read it"
    );

    lease.release().await.unwrap();
    assert_eq!(reader.status(&name).await.unwrap(), LockStatus::Free);
    let next = reader
        .acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    let status = holder.status(&name).await.unwrap();
    if let Some(token) = status.holder().and_then(|read| read.token) {
        assert_eq!(
            token,
            next.fencing_token(),
            "status read the last holder's token"
        );
    }
    assert!(
        status.holder().is_some(),
        "the next holder read as {status:?}"
    );
    next.release().await.unwrap();
    expired_lock_reads_free(&holder, &reader, timing.ttl).await;
}

/// A TTL grant left to expire reads `Free` once the server's TTL has run.
async fn expired_lock_reads_free(holder: &Locker, reader: &Locker, ttl: Duration) {
    if holder.capabilities().lease != LeaseModel::Ttl {
        return;
    }
    let name = unique_name("status-expiry");
    let lease = holder.acquire(&name, Acquire::ttl(ttl)).await.unwrap();
    lease.lost().await;
    // The lease turns Lost at its own bound, which is before the server's
    // expiry (that is counted from when the server received the request,
    // and less the drift allowance): nothing signals the server's expiry,
    // which is at most one TTL later.
    tokio::time::sleep(ttl).await;
    assert_eq!(reader.status(&name).await.unwrap(), LockStatus::Free);
}
