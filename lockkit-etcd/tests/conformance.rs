//! The whole conformance suite against the three-member etcd cluster of
//! `scripts/services` (`LOCKKIT_TEST_ETCD_ENDPOINTS`), every client on its
//! own connection and session lease, under a namespace of its own per run.

use lockkit_core::conformance::Target;
use lockkit_core::Locker;
use lockkit_etcd::{EtcdBackend, EtcdOptions};
use lockkit_testkit::unique_namespace;

mod common;

async fn target() -> Option<impl Target> {
    let (url, _) = common::cluster()?;
    let namespace = unique_namespace();
    Some(move || {
        let (url, options) = (url.clone(), EtcdOptions::new().namespace(&namespace));
        async move {
            let backend = EtcdBackend::connect_with(&url, options)
                .await
                .expect("connect to the test etcd cluster");
            Locker::new(backend)
        }
    })
}

lockkit_core::conformance_suite!(target());
