//! Leader affinity: while the cluster is healthy, every request and stream
//! of a backend goes to the member that leads it.
//!
//! A write sent to a follower is forwarded to the leader and answered only
//! once the follower has applied it, and a follower delivers a watch event
//! only after it learns of the commit: each adds a hop between members to a
//! handoff. So at connect the backend asks which member leads, and, if the
//! URL lists it, sends everything there. The first request or stream that
//! fails before an answer spreads the backend over every other listed
//! member, for good, and keeps the old leader out for 10 s — it may be hung
//! rather than gone — before letting it back among the others.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use etcd_client::Client;

/// How long a leader whose request failed stays out of the balancer.
const QUARANTINE: Duration = Duration::from_secs(10);

/// Where a backend's requests go.
pub(crate) struct Affinity {
    client: Client,
    /// Every member the URL lists, as the driver takes them.
    endpoints: Vec<String>,
    /// The leader's endpoint while the others are out of the balancer.
    pinned: Mutex<Option<String>>,
}

impl std::fmt::Debug for Affinity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Affinity")
            .field("endpoints", &self.endpoints)
            .field("pinned", &self.pinned())
            .finish()
    }
}

impl Affinity {
    /// Asks the cluster which member leads and, if `endpoints` lists it,
    /// takes the others out of the client's balancer. Any failure on the
    /// way leaves the client spread over every member.
    pub(crate) async fn pin_leader(
        client: &Client,
        endpoints: Vec<String>,
        within: Duration,
    ) -> Self {
        let affinity = Self::spread_over(client, endpoints);
        if affinity.endpoints.len() > 1 {
            if let Ok(Some(leader)) = tokio::time::timeout(within, affinity.leader()).await {
                affinity.pin(leader).await;
            }
        }
        affinity
    }

    /// Requests spread over every member of `endpoints`, as connected.
    pub(crate) fn spread_over(client: &Client, endpoints: Vec<String>) -> Self {
        Self {
            client: client.clone(),
            endpoints,
            pinned: Mutex::new(None),
        }
    }

    /// The listed endpoint of the member that leads, if the cluster says.
    async fn leader(&self) -> Option<String> {
        let status = self.client.maintenance_client().status().await.ok()?;
        let members = self.client.cluster_client().member_list().await.ok()?;
        let leader = members
            .members()
            .iter()
            .find(|member| member.id() == status.leader())?;
        let urls: Vec<&str> = leader
            .client_urls()
            .iter()
            .map(|url| url.trim_end_matches('/'))
            .collect();
        self.endpoints
            .iter()
            .find(|endpoint| urls.contains(&endpoint.as_str()))
            .cloned()
    }

    async fn pin(&self, leader: String) {
        for endpoint in self
            .endpoints
            .iter()
            .filter(|endpoint| **endpoint != leader)
        {
            if self.client.remove_endpoint(endpoint).await.is_err() {
                self.spread().await;
                return;
            }
        }
        tracing::debug!(leader, "requests go to the leader");
        *self.pinned.lock().unwrap_or_else(PoisonError::into_inner) = Some(leader);
    }

    /// A request or stream failed before an answer: from now on, every
    /// listed member serves this backend.
    pub(crate) async fn spread(&self) {
        let Some(leader) = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        tracing::debug!(
            leader,
            "a request to the leader failed; spreading over every other member"
        );
        for endpoint in self
            .endpoints
            .iter()
            .filter(|endpoint| **endpoint != leader)
        {
            let _ = self.client.add_endpoint(endpoint).await;
        }
        // The member that failed may be hung rather than gone (a paused
        // process, a stalled disk): its connection would look ready, and
        // requests sent there would wait out their timeout. Keep it out of
        // the balancer for a while, then let it back among the others.
        if self.client.remove_endpoint(&leader).await.is_ok() {
            let client = self.client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(QUARANTINE).await;
                let _ = client.add_endpoint(&leader).await;
            });
        }
    }

    /// The leader's endpoint, while requests go there alone.
    pub(crate) fn pinned(&self) -> Option<String> {
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
