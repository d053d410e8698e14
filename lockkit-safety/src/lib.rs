//! lockkit-safety: runs lock clients against a backend under real faults,
//! records what happened as a history, and checks the history: how often
//! two clients held the lock at once, and how often a stale holder's write
//! reached the fenced resource.
//!
//! This first part is the [`history`]: its events and the checker.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod history;
