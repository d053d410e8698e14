//! The etcd subjects: the raw floor — the acquire's put-if-absent
//! transaction and a delete, with the driver directly — and the peer a user
//! would pick instead, etcd's own Lock RPC through etcd-client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, GetOptions, LockOptions, PutOptions, Txn, TxnOp};

use crate::subjects::{Outcome, Service, Subject};

/// The TTL of each raw client's lease, in seconds: longer than any run, so
/// the floor keeps no lease alive.
const LEASE_TTL: i64 = 120;

/// A client connected to every member with a lease of its own.
async fn connect(members: &[String]) -> Outcome<(Client, i64)> {
    let endpoints: Vec<String> = members
        .iter()
        .map(|member| format!("http://{member}"))
        .collect();
    let client = Client::connect(endpoints, None)
        .await
        .map_err(|error| error.to_string())?;
    let lease = client
        .lease_client()
        .grant(LEASE_TTL, None)
        .await
        .map_err(|error| error.to_string())?
        .id();
    Ok((client, lease))
}

/// The etcd floor: for W1 and W3 the acquire's transaction — put
/// `<ns>/<name>/<lease>` with the lease if its create revision is 0 — and a
/// delete; for W2, the only waiting the driver offers: the Lock RPC.
pub(crate) struct RawEtcd {
    pub(crate) members: Vec<String>,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for RawEtcd {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let (client, lease) = connect(&self.members).await?;
        Ok(Arc::new(RawEtcdClient {
            client,
            lease,
            namespace: self.namespace.clone(),
        }))
    }
}

struct RawEtcdClient {
    client: Client,
    lease: i64,
    namespace: String,
}

#[async_trait]
impl Subject for RawEtcdClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let key = format!("{}/raw:{name}/{:x}", self.namespace, self.lease);
        let put = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(
                    key.as_str(),
                    "",
                    Some(PutOptions::new().with_lease(self.lease)),
                ),
                TxnOp::get(
                    format!("{}/raw:{name}/", self.namespace),
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                ),
            ])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let reply = self
            .client
            .kv_client()
            .txn(put)
            .await
            .map_err(|error| error.to_string())?;
        if !reply.succeeded() {
            return Err(format!("raw put of free lock {name} refused"));
        }
        let revision = reply.header().map_or(0, |header| header.revision());
        let delete = Txn::new()
            .when([Compare::create_revision(
                key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let reply = self
            .client
            .kv_client()
            .txn(delete)
            .await
            .map_err(|error| error.to_string())?;
        if !reply.succeeded() {
            return Err(format!("raw delete of {name} found it gone"));
        }
        Ok(())
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        lock_rpc(
            &self.client,
            self.lease,
            &format!("{}/raw:{name}", self.namespace),
        )
        .await
    }
}

/// etcd-client's Lock RPC, as a user of the driver locks: the server's
/// v3lock service (the recipe run server-side, waiting on a watch opened at
/// a past revision) with a lease per client, then Unlock.
pub(crate) struct EtcdLockRpc {
    pub(crate) members: Vec<String>,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for EtcdLockRpc {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let (client, lease) = connect(&self.members).await?;
        Ok(Arc::new(EtcdLockRpcClient {
            client,
            lease,
            namespace: self.namespace.clone(),
        }))
    }
}

struct EtcdLockRpcClient {
    client: Client,
    lease: i64,
    namespace: String,
}

#[async_trait]
impl Subject for EtcdLockRpcClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        lock_rpc(
            &self.client,
            self.lease,
            &format!("{}/rpc:{name}", self.namespace),
        )
        .await
        .map(drop)
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        lock_rpc(
            &self.client,
            self.lease,
            &format!("{}/rpc:{name}", self.namespace),
        )
        .await
    }
}

/// Locks `name` by the Lock RPC and unlocks it; returns how long the lock waited.
async fn lock_rpc(client: &Client, lease: i64, name: &str) -> Outcome<Duration> {
    let started = Instant::now();
    let locked = client
        .lock_client()
        .lock(name, Some(LockOptions::new().with_lease(lease)))
        .await
        .map_err(|error| format!("lock RPC of {name}: {error}"))?;
    let waited = started.elapsed();
    client
        .lock_client()
        .unlock(locked.key())
        .await
        .map_err(|error| format!("unlock RPC of {name}: {error}"))?;
    Ok(waited)
}
