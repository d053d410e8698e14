//! The whole conformance suite against the five independent Redis servers
//! of `scripts/services` (`LOCKKIT_TEST_REDLOCK_URLS`), every client on its
//! own connections, under a namespace of its own per run.

use lockkit_core::conformance::Target;
use lockkit_core::Locker;
use lockkit_redlock::RedlockOptions;
use lockkit_testkit::unique_namespace;

mod common;

async fn target() -> Option<impl Target> {
    let nodes = common::nodes()?;
    let namespace = unique_namespace();
    Some(move || {
        let (nodes, options) = (nodes.clone(), RedlockOptions::new().namespace(&namespace));
        async move { Locker::new(common::backend(&nodes, options).await) }
    })
}

lockkit_core::conformance_suite!(target());
