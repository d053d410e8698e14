//! Releases that come together go out together — one `multi` of deletes —
//! and still each get their own answer: a node someone else deleted is
//! `NotHeld`, and every other node of the batch is deleted.

use std::time::Duration;

use lockkit_core::{AcquireRequest, Claim, ErrorKind, LockBackend, LockName, OwnerToken, Wait};

mod common;
use common::{backend, ensemble, lock_nodes, namespace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_sent_together_each_get_their_own_answer() {
    const LOCKS: usize = 32;
    const DELETED: usize = LOCKS / 2;
    let Some((url, servers)) = ensemble() else {
        return;
    };
    let backend = backend(
        &url,
        &namespace(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await;
    let mut claims = Vec::with_capacity(LOCKS);
    for i in 0..LOCKS {
        let name = LockName::new(&format!("together:{i}")).unwrap();
        let owner = OwnerToken::generate().unwrap();
        let grant = backend
            .acquire(AcquireRequest {
                name: name.clone(),
                owner,
                ttl: Duration::from_secs(30),
                wait: Wait::No,
            })
            .await
            .unwrap();
        claims.push(Claim {
            name,
            owner,
            token: grant.token,
            handle: grant.handle,
        });
    }
    // One node deleted behind the backend's back, as an operator would.
    let deleted = backend.lock_path(&format!("together:{DELETED}")).unwrap();
    let nodes = lock_nodes(&servers, &deleted).await;
    let [node] = nodes.as_slice() else {
        panic!("{deleted} holds {nodes:?}, not one lock node");
    };
    let client = lockkit_zk::zookeeper_client::Client::connect(&servers.join(","))
        .await
        .unwrap();
    client.delete(node, None).await.unwrap();

    // All at once: the first goes out alone, the rest queue behind it and
    // go out as one multi, which the deleted node makes the server refuse.
    let releases: Vec<_> = claims
        .into_iter()
        .map(|claim| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.release(&claim).await })
        })
        .collect();
    for (i, release) in releases.into_iter().enumerate() {
        let released = release.await.unwrap();
        if i == DELETED {
            let error = released.expect_err("the deleted node's release succeeded");
            assert_eq!(error.kind(), ErrorKind::NotHeld, "{error}");
        } else {
            released.unwrap_or_else(|error| panic!("release {i}: {error}"));
        }
    }
    for i in 0..LOCKS {
        let parent = backend.lock_path(&format!("together:{i}")).unwrap();
        assert_eq!(
            lock_nodes(&servers, &parent).await,
            Vec::<String>::new(),
            "a node of a released lock stayed"
        );
    }
}
