//! lockkit's Redlock backend: a lock held on a majority of N independent
//! Redis servers, so one server's crash or failover does not lose it.
//!
//! Docs: see the crate README section in the workspace README ("Redlock,
//! in one paragraph") until this page is written out.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod backend;
mod options;
mod quorum;
mod url;

pub use backend::RedlockBackend;
pub use options::{RedlockConfig, RedlockOptions, DRIFT_FLOOR, TTL_PER_NODE_TIMEOUT};
pub use url::node_urls;

/// The backend's name, as errors carry it.
const BACKEND: &str = "redlock";
