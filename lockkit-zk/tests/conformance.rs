//! The whole conformance suite against the three-server ZooKeeper ensemble
//! of `scripts/services` (`LOCKKIT_TEST_ZK_CONNECT`), every client on its
//! own session, under a namespace of its own per run.

use lockkit_core::conformance::Target;
use lockkit_core::Locker;
use lockkit_testkit::unique_namespace;
use lockkit_zk::{ZkBackend, ZkOptions};

mod common;

async fn target() -> Option<impl Target> {
    let (url, _) = common::ensemble()?;
    let namespace = unique_namespace();
    Some(move || {
        let (url, options) = (url.clone(), ZkOptions::new().namespace(&namespace));
        async move {
            let backend = ZkBackend::connect_with(&url, options)
                .await
                .expect("connect to the test ZooKeeper ensemble");
            Locker::new(backend)
        }
    })
}

lockkit_core::conformance_suite!(target());
