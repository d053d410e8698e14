//! The Redlock floor: lockkit-redis' own commands on every node at once,
//! waiting for all of them — what a Redlock costs before any algorithm.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::join_all;
use lockkit_redis::keys::LockKeys;
use lockkit_redis::scripts::{fast_acquire, Scripts};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, PushInfo, Script};
use tokio::sync::{mpsc, Mutex};

use crate::subjects::{next_release, Outcome, Service, Subject, TTL};

/// Per client, one connection per node. W1 and W3: `SET NX PX` and
/// `INCRBY` pipelined (lockkit's vote without its `PTTL`) on every node,
/// then the release script on every node, each step waiting for all five.
/// W2: the same acquire retried when a release is published on any node
/// (a release script that deletes and publishes), a majority winning.
pub(crate) struct RawRedlock {
    pub(crate) urls: Vec<String>,
    pub(crate) namespace: String,
}

#[async_trait]
impl Service for RawRedlock {
    async fn client(&self) -> Outcome<Arc<dyn Subject>> {
        let (sender, pushes) = mpsc::unbounded_channel::<PushInfo>();
        let mut connections = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let client =
                Client::open(format!("{url}?protocol=resp3")).map_err(|error| error.to_string())?;
            let config = AsyncConnectionConfig::new().set_push_sender(sender.clone());
            connections.push(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|error| error.to_string())?,
            );
        }
        Ok(Arc::new(RawRedlockClient {
            connections,
            pushes: Mutex::new(pushes),
            namespace: self.namespace.clone(),
            owners: AtomicU64::new(0),
            release_and_publish: Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 redis.call('DEL', KEYS[1]) redis.call('PUBLISH', KEYS[2], '') return 1 end \
                 return 0",
            ),
            subscribed: Mutex::new(None),
        }))
    }
}

struct RawRedlockClient {
    connections: Vec<MultiplexedConnection>,
    pushes: Mutex<mpsc::UnboundedReceiver<PushInfo>>,
    namespace: String,
    owners: AtomicU64,
    release_and_publish: Script,
    subscribed: Mutex<Option<String>>,
}

impl RawRedlockClient {
    fn owner(&self) -> String {
        format!("{:032x}", self.owners.fetch_add(1, Ordering::Relaxed))
    }

    fn majority(&self) -> usize {
        self.connections.len() / 2 + 1
    }

    /// The vote on every node; which nodes granted.
    async fn acquire_all(&self, keys: &LockKeys, owner: &str) -> Outcome<Vec<bool>> {
        let pipeline = fast_acquire(keys, owner, TTL.as_millis() as u64);
        let votes = self.connections.iter().map(|connection| {
            let (mut connection, pipeline) = (connection.clone(), &pipeline);
            async move {
                pipeline
                    .query_async::<(Option<String>, i64)>(&mut connection)
                    .await
                    .map(|(set, _)| set.is_some())
                    .map_err(|error| error.to_string())
            }
        });
        join_all(votes).await.into_iter().collect()
    }

    /// The release script on every node.
    async fn release_all(&self, keys: &LockKeys, owner: &str) -> Outcome<usize> {
        let scripts = Scripts::get();
        let releases = self.connections.iter().map(|connection| {
            let mut connection = connection.clone();
            async move {
                scripts
                    .release(keys, owner)
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(|error| error.to_string())
            }
        });
        let codes: Vec<i64> = join_all(releases)
            .await
            .into_iter()
            .collect::<Outcome<_>>()?;
        Ok(codes.iter().filter(|code| **code == 1).count())
    }
}

#[async_trait]
impl Subject for RawRedlockClient {
    async fn pair(&self, name: &str) -> Outcome<()> {
        let keys = LockKeys::new(&self.namespace, name);
        let owner = self.owner();
        let granted = self.acquire_all(&keys, &owner).await?;
        let granted = granted.iter().filter(|granted| **granted).count();
        if granted < self.majority() {
            return Err(format!(
                "raw Redlock acquire of free lock {name}: {granted} granted"
            ));
        }
        let released = self.release_all(&keys, &owner).await?;
        if released < self.majority() {
            return Err(format!(
                "raw Redlock release of {name}: {released} released"
            ));
        }
        Ok(())
    }

    async fn contend(&self, name: &str) -> Outcome<Duration> {
        let keys = LockKeys::new(&self.namespace, &format!("raw:{name}"));
        let channel = format!("{}:released", keys.lock());
        {
            let mut subscribed = self.subscribed.lock().await;
            if subscribed.as_deref() != Some(channel.as_str()) {
                for connection in &self.connections {
                    connection
                        .clone()
                        .subscribe(&channel)
                        .await
                        .map_err(|error| error.to_string())?;
                }
                *subscribed = Some(channel.clone());
            }
        }
        let owner = self.owner();
        let started = Instant::now();
        let mut pushes = self.pushes.lock().await;
        loop {
            while pushes.try_recv().is_ok() {}
            let granted = self.acquire_all(&keys, &owner).await?;
            if granted.iter().filter(|granted| **granted).count() >= self.majority() {
                break;
            }
            self.release_all(&keys, &owner).await?;
            next_release(&mut pushes).await;
        }
        let waited = started.elapsed();
        drop(pushes);
        let releases = self.connections.iter().map(|connection| {
            let (mut connection, keys, channel, owner) =
                (connection.clone(), &keys, &channel, &owner);
            let script = &self.release_and_publish;
            async move {
                script
                    .key(keys.lock())
                    .key(channel)
                    .arg(owner)
                    .invoke_async::<i64>(&mut connection)
                    .await
                    .map_err(|error| error.to_string())
            }
        });
        join_all(releases)
            .await
            .into_iter()
            .collect::<Outcome<Vec<i64>>>()?;
        Ok(waited)
    }
}
