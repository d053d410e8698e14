//! Ownership: only the current owner can extend or release.

use std::time::Duration;

use super::{claim_of, expect_error, unique_name, Target, Timing};
use crate::{Acquire, ErrorKind, LeaseModel};

/// A holder whose lease ended cannot release or extend the next holder's
/// lock — through its lease or straight at the backend.
pub async fn stale_owner_cannot_release_or_extend_next_holder(target: &impl Target) {
    let (stale_client, next_client, probe) = (
        target.client().await,
        target.client().await,
        target.client().await,
    );
    let timing = Timing::of(&stale_client);
    let name = unique_name("stale-owner");
    let stale = stale_client
        .acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    let stale_claim = claim_of(&stale);
    match stale_client.capabilities().lease {
        LeaseModel::Session => stale_client.close().await.unwrap(),
        _ => {
            stale.lost().await;
        }
    }
    let next = next_client
        .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.ttl * 20))
        .await
        .expect("the lock is free once the stale lease ended");
    assert!(next.fencing_token() > stale.fencing_token());

    let backend = stale_client.backend();
    expect_error(
        backend.release(&stale_claim).await,
        ErrorKind::NotHeld,
        "stale release at the backend",
    );
    if stale_client.capabilities().extend {
        expect_error(
            backend.extend(&stale_claim, timing.long_ttl).await,
            ErrorKind::NotHeld,
            "stale extend at the backend",
        );
    }
    // The stale owner presenting the next grant's handle (a wrapper mixing
    // claims up) is refused too, at the backend that made that grant.
    let mixed = crate::Claim {
        handle: claim_of(&next).handle,
        ..stale_claim.clone()
    };
    let granting = next_client.backend();
    expect_error(
        granting.release(&mixed).await,
        ErrorKind::NotHeld,
        "stale owner's release with the next grant's handle",
    );
    if next_client.capabilities().extend {
        expect_error(
            granting.extend(&mixed, timing.long_ttl).await,
            ErrorKind::NotHeld,
            "stale owner's extend with the next grant's handle",
        );
    }
    let error = expect_error(
        stale.release().await,
        ErrorKind::NotHeld,
        "stale release through its lease",
    );
    assert!(
        error.message().contains(&name),
        "error does not name the lock: {error}"
    );

    assert!(next.is_held());
    let blocked = probe
        .try_acquire(&name, Acquire::ttl(timing.long_ttl))
        .await
        .unwrap();
    assert!(
        blocked.is_none(),
        "the stale owner freed the next holder's lock"
    );
    next.release()
        .await
        .expect("the next holder still owns its lock");
}

/// Extending an expired lease is `NotHeld`, locally and at the backend.
pub async fn extend_after_expiry_is_not_held(target: &impl Target) {
    let locks = target.client().await;
    let capabilities = locks.capabilities().clone();
    let timing = Timing::of(&locks);
    if !capabilities.extend {
        let lease = locks
            .acquire(&unique_name("extend-unsupported"), Acquire::ttl(timing.ttl))
            .await
            .unwrap();
        expect_error(
            lease.extend(timing.ttl).await,
            ErrorKind::Unsupported,
            "extend on a backend without it",
        );
        lease.release().await.unwrap();
        return;
    }
    let session = capabilities.lease == LeaseModel::Session;
    let name = unique_name("extend-expired");
    let lease = locks
        .acquire(&name, Acquire::ttl(timing.ttl))
        .await
        .unwrap();
    let claim = claim_of(&lease);
    if session {
        locks.close().await.unwrap();
    }
    tokio::time::timeout(timing.ttl * 20, lease.lost())
        .await
        .expect("the lease was never lost");
    let error = expect_error(
        lease.extend(timing.ttl).await,
        ErrorKind::NotHeld,
        "extend of an expired lease",
    );
    let why = if session { "lost" } else { "expired" };
    assert!(
        error.message().contains(why),
        "error does not say the lease {why}: {error}"
    );
    // The server-side key outlives the local bound by the drift allowance.
    tokio::time::sleep(capabilities.drift_for(timing.ttl) * 2 + Duration::from_millis(20)).await;
    expect_error(
        locks.backend().extend(&claim, timing.ttl).await,
        ErrorKind::NotHeld,
        "extend of an expired lock at the backend",
    );
    assert!(
        lease.release().await.is_err(),
        "release of an expired lease reported success"
    );
}
