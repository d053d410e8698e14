//! The lockkit contract: one async lock API that every backend implements.
//!
//! Applications hold a [`Locker`] and get [`Lease`]s; backends implement
//! [`LockBackend`]. Every lease carries a [`FencingToken`] that strictly
//! increases across the grants of a name, so a protected resource can refuse
//! a stale holder. What each backend promises is stated by its
//! [`Capabilities`].
//!
//! ```
//! use std::time::Duration;
//! use lockkit_core::{Acquire, Locker};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> lockkit_core::Result<()> {
//! let locks = Locker::memory();
//! let lease = locks
//!     .acquire("billing:user-42", Acquire::ttl(Duration::from_secs(30)).wait(Duration::from_secs(5)))
//!     .await?;
//! println!("fencing token {}", lease.fencing_token());
//! lease.release().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # The guarantees
//!
//! Every backend keeps these; the conformance suite
//! (`lockkit_core::conformance`, feature `conformance`) checks each one:
//!
//! 1. **Mutual exclusion** within the backend's failure model ([`SafetyClass`]).
//! 2. **Ownership**: extend and release act only for the current owner
//!    ([`OwnerToken`], 128 random bits); otherwise `NotHeld`, nothing changed.
//! 3. **Validity on a monotonic clock**, measured from the instant the request was sent.
//! 4. **Fencing tokens**: never 0, strictly increasing per name.
//! 5. **Lost signal**: [`LeaseState`] and [`LeaseView::not_held`] / [`LeaseView::lost`].
//! 6. **Renewal**: [`Acquire::auto_renew`], stopped by release and drop.
//! 7. **Cancellation safety** of acquire.
//! 8. **Drop** releases in the background.
//! 9. **Bad input** is refused before any I/O with [`ErrorKind::InvalidInput`].
//! 10. **Honest capabilities**: what a backend cannot do is [`ErrorKind::Unsupported`].
//!
//! # Conformance
//!
//! A backend crate runs the whole suite with one macro call in its tests;
//! see the `conformance` module (feature `conformance`).

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(rustdoc::broken_intra_doc_links)]
#![forbid(unsafe_code)]

mod backend;
mod background;
mod capabilities;
mod cluster_url;
pub mod conninfo;
mod error;
mod fence;
mod lease;
mod life;
mod locker;
mod memory;
mod name;
mod options;
mod owner;
pub mod repeat;
mod session;
pub mod settings;
mod status;
pub mod telemetry;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use backend::{AcquireRequest, Claim, Grant, GrantHandle, LockBackend, Wait};
pub use background::{Background, InFlight, Undo, UndoStep};
pub use capabilities::{
    Capabilities, Fairness, FencingGuarantee, LeaseModel, SafetyClass, WaitMode,
};
pub use cluster_url::{ClusterScheme, ClusterUrl};
pub use conninfo::redact_url;
pub use error::{Error, ErrorKind, Result};
pub use fence::FencingToken;
pub use lease::{Lease, LeaseState, LeaseView};
pub use locker::{Locker, DEFAULT_TTL};
pub use memory::MemoryBackend;
pub use name::{
    check_namespace, check_timeouts, LockName, DEFAULT_NAMESPACE, MAX_NAMESPACE_BYTES,
    MAX_NAME_BYTES, MAX_TIMEOUT,
};
pub use options::{Acquire, Renewal};
pub use owner::{OwnerToken, OwnerTokens};
pub use repeat::REPEAT_FOR;
pub use session::{
    session_drift, KeptSession, SessionHealth, SessionSignal, SessionStatus, SessionWatch,
};
pub use status::{Expiry, Holder, LockStatus};
