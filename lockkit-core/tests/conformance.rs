//! The conformance suite on the memory backend: as constructed, through a
//! shared `Arc<dyn LockBackend>` as a configuration would build it, and
//! presenting no `extend` so the capability-gated branches run too.

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

/// The suite's capability-gated branches: a memory backend presenting no
/// `extend`, so every case that needs it must see `Unsupported` instead.
mod memory_without_extend {
    use super::*;
    use lockkit_core::conformance::ProbedBackend;

    async fn target() -> Option<impl Target> {
        let inner = MemoryBackend::new();
        let mut capabilities = inner.capabilities().clone();
        capabilities.extend = false;
        let backend: Arc<dyn LockBackend> =
            Arc::new(ProbedBackend::new(Arc::new(inner)).with_capabilities(capabilities));
        Some(move || {
            let backend = Arc::clone(&backend);
            async move { Locker::from_backend(backend) }
        })
    }

    lockkit_core::conformance_suite!(target());
}
