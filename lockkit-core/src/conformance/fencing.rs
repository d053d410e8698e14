//! Fencing tokens: never 0, strictly increasing across the grants of a name.

use super::{unique_name, Target, Timing};
use crate::{Acquire, LeaseModel};

/// Successive grants — by release, by expiry, from different clients —
/// carry strictly increasing tokens, all at least 1.
pub async fn fencing_tokens_strictly_increase(target: &impl Target) {
    let clients = [target.client().await, target.client().await];
    let timing = Timing::of(&clients[0]);
    let name = unique_name("fencing");
    let mut last = 0u64;
    for round in 0..20 {
        let locks = &clients[round % 2];
        let lease = locks
            .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.long_ttl))
            .await
            .unwrap();
        let token = lease.fencing_token().get();
        assert!(token >= 1 && token > last, "token {token} after {last}");
        last = token;
        lease.release().await.unwrap();
    }
    if clients[0].capabilities().lease == LeaseModel::Ttl {
        let expiring = clients[0]
            .acquire(&name, Acquire::ttl(timing.ttl))
            .await
            .unwrap();
        assert!(expiring.fencing_token().get() > last);
        last = expiring.fencing_token().get();
        let after_expiry = clients[1]
            .acquire(&name, Acquire::ttl(timing.long_ttl).wait(timing.ttl * 20))
            .await
            .unwrap();
        assert!(
            after_expiry.fencing_token().get() > last,
            "a grant after expiry reused a token"
        );
        after_expiry.release().await.unwrap();
        assert!(
            expiring.release().await.is_err(),
            "release of an expired lease reported success"
        );
    }
}
