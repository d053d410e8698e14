//! The ZooKeeper subjects: the raw floor — an ephemeral sequential create
//! and a delete, with the driver directly — and the peer a user would pick
//! instead, `zookeeper-client`'s own lock with Curator's prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use zookeeper_client::{Acls, Client, CreateMode, Error, LockOptions, LockPrefix};

use crate::subjects::{Outcome, Service, Subject};

/// A client — one session, one connection — of the ensemble at `servers`.
async fn connect(servers: &str) -> Outcome<Client> {
    Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .connect(servers)
        .await
        .map_err(|error| error.to_string())
}

/// The ZooKeeper floor: for W1 and W3 the acquire's create — an ephemeral
/// sequential node under `/<ns>/raw:<name>`, its parents made once as
/// containers — and its delete; for W2, the only waiting the driver
/// offers: its own lock.
pub(crate) struct RawZk {
    pub(crate) servers: String,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for RawZk {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        Ok(Arc::new(RawZkClient {
            client: connect(&self.servers).await?,
            namespace: self.namespace.clone(),
        }))
    }
}

struct RawZkClient {
    client: Client,
    namespace: String,
}

#[async_trait]
impl Subject for RawZkClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let parent = format!("/{}/raw:{name}", self.namespace);
        let prefix = format!("{parent}/n-");
        let options = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
        let created = match self.client.create(&prefix, b"", &options).await {
            Err(Error::NoNode) => {
                let container = CreateMode::Container.with_acls(Acls::anyone_all());
                self.client
                    .mkdir(&parent, &container)
                    .await
                    .map_err(|error| format!("mkdir {parent}: {error}"))?;
                self.client.create(&prefix, b"", &options).await
            }
            created => created,
        };
        let (_, sequence) = created.map_err(|error| format!("create under {parent}: {error}"))?;
        self.client
            .delete(&format!("{prefix}{sequence}"), None)
            .await
            .map_err(|error| format!("delete under {parent}: {error}"))
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        driver_lock(&self.client, &format!("/{}/raw:{name}", self.namespace)).await
    }
}

/// `zookeeper-client`'s lock with Curator's prefix (`_c_<uuid>-lock-`), as
/// a user of the driver locks: one session per client, parents created as
/// containers, the lock node deleted to unlock.
pub(crate) struct ZkDriverLock {
    pub(crate) servers: String,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for ZkDriverLock {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        Ok(Arc::new(ZkDriverLockClient {
            client: connect(&self.servers).await?,
            namespace: self.namespace.clone(),
        }))
    }
}

struct ZkDriverLockClient {
    client: Client,
    namespace: String,
}

#[async_trait]
impl Subject for ZkDriverLockClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        driver_lock(&self.client, &format!("/{}/lock:{name}", self.namespace))
            .await
            .map(drop)
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        driver_lock(&self.client, &format!("/{}/lock:{name}", self.namespace)).await
    }
}

/// Locks `dir` with the driver's Curator-prefixed lock and unlocks it;
/// returns how long the lock waited.
async fn driver_lock(client: &Client, dir: &str) -> Outcome<Duration> {
    let started = Instant::now();
    let options = LockOptions::new(Acls::anyone_all())
        .with_ancestor_options(CreateMode::Container.with_acls(Acls::anyone_all()))
        .map_err(|error| error.to_string())?;
    let prefix = LockPrefix::new_curator(dir, "lock-").map_err(|error| error.to_string())?;
    let locked = client
        .lock(prefix, b"", options)
        .await
        .map_err(|error| format!("lock {dir}: {error}"))?;
    let waited = started.elapsed();
    locked
        .delete(locked.lock_path(), None)
        .await
        .map_err(|error| format!("unlock {dir}: {error}"))?;
    Ok(waited)
}
