//! Releases that come together go out together — one `multi` of deletes —
//! and still each get their own answer: a node someone else deleted is
//! `NotHeld`, every other node of the batch is deleted, and callers on
//! runtimes that come and go all get their answer.

use std::time::Duration;

use lockkit_core::{AcquireRequest, Claim, ErrorKind, LockBackend, LockName, OwnerToken, Wait};
use lockkit_zk::ZkBackend;

mod common;
use common::{backend, ensemble, lock_nodes, namespace};

/// Acquires the free lock `name` on `backend` directly; the claim to
/// release it with.
async fn grab(backend: &ZkBackend, name: &str) -> Claim {
    let name = LockName::new(name).unwrap();
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
    Claim {
        name,
        owner,
        token: grant.token,
        handle: grant.handle,
    }
}

/// A backend on the ensemble under a fresh namespace, holding `count`
/// locks `<prefix>:<i>`; the servers, and the claims to release them with.
async fn holding(prefix: &str, count: usize) -> Option<(ZkBackend, Vec<String>, Vec<Claim>)> {
    let (url, servers) = ensemble()?;
    let backend = backend(
        &url,
        &namespace(),
        Duration::from_secs(10),
        Duration::from_secs(5),
    )
    .await;
    let mut claims = Vec::with_capacity(count);
    for i in 0..count {
        claims.push(grab(&backend, &format!("{prefix}:{i}")).await);
    }
    Some((backend, servers, claims))
}

/// Threads sharing one backend, each releasing on a runtime of its own
/// that it drops right after (a blocking wrapper's `block_on`): the
/// deletes that queue behind one in flight are sent by whichever caller
/// still waits, on its own runtime — so every release answers, no node
/// stays, and the backend keeps releasing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_from_short_lived_runtimes_all_answer() {
    const THREADS: usize = 8;
    const EACH: usize = 16;
    let Some((backend, servers, claims)) = holding("runtimes", THREADS * EACH).await else {
        return;
    };
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for chunk in claims.chunks(EACH) {
        let (chunk, backend, answered) = (chunk.to_vec(), backend.clone(), answered.clone());
        std::thread::spawn(move || {
            for claim in chunk {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let released = runtime.block_on(backend.release(&claim));
                drop(runtime);
                let _ = answered.send((claim.name.as_str().to_owned(), released));
            }
        });
    }
    drop(answered);
    for _ in 0..THREADS * EACH {
        let (name, released) = tokio::time::timeout(Duration::from_secs(30), answers.recv())
            .await
            .expect("a release did not answer within 30 s")
            .expect("a releasing thread ended early");
        released.unwrap_or_else(|error| panic!("release {name}: {error}"));
    }
    for i in 0..THREADS * EACH {
        let parent = backend.lock_path(&format!("runtimes:{i}")).unwrap();
        assert_eq!(lock_nodes(&servers, &parent).await, Vec::<String>::new());
    }
    let later = grab(&backend, "runtimes:later").await;
    tokio::time::timeout(Duration::from_secs(10), backend.release(&later))
        .await
        .expect("a release after them did not answer")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_sent_together_each_get_their_own_answer() {
    const LOCKS: usize = 32;
    const DELETED: usize = LOCKS / 2;
    let Some((backend, servers, claims)) = holding("together", LOCKS).await else {
        return;
    };
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
