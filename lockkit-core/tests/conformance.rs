//! The conformance suite on the memory backend: once as constructed, once
//! through a shared `Arc<dyn LockBackend>` as a configuration would build it.

use std::sync::Arc;

use lockkit_core::conformance::Target;
use lockkit_core::{LockBackend, Locker, MemoryBackend};

mod memory {
    use super::*;

    async fn target() -> Option<impl Target> {
        let backend = MemoryBackend::new();
        Some(move || {
            let backend = backend.clone();
            async move { Locker::new(backend) }
        })
    }

    lockkit_core::conformance_suite!(target());
}

mod memory_through_dyn {
    use super::*;

    async fn target() -> Option<impl Target> {
        let backend: Arc<dyn LockBackend> = Arc::new(MemoryBackend::new());
        Some(move || {
            let backend = Arc::clone(&backend);
            async move { Locker::from_backend(backend) }
        })
    }

    lockkit_core::conformance_suite!(target());
}
