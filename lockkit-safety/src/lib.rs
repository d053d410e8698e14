//! lockkit-safety: runs lock clients against a backend under real faults,
//! records what happened as a history, and checks the history: how often
//! two clients held the lock at once, and how often a stale holder's write
//! reached the fenced resource. See the README for the command and the
//! latest report.
//!
//! - [`history`]: the events and the checker;
//! - [`plan`]: backends, scenarios, and what each backend promises;
//! - [`run`]: one run — client processes ([`client`]), the fenced
//!   [`resource`], the nemesis — and its checked outcome;
//! - [`report`]: the table and the JSON.

#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![forbid(unsafe_code)]

pub mod client;
pub mod clock;
pub mod history;
mod nemesis;
pub mod plan;
pub mod proxy;
pub mod report;
pub mod resource;
pub mod run;
pub mod servers;
