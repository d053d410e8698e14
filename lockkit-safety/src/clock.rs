//! The clock every event is stamped with.

use nix::time::{clock_gettime, ClockId};

/// Now on the system-wide monotonic clock (`CLOCK_MONOTONIC`), in ns: one
/// clock for every process of the host, unmoved by wall-clock jumps (and
/// left alone by libfaketime in the clock-jump scenario).
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC always exists on Linux; a failure would be a broken
    // kernel, and 0 then sorts the event first rather than ending the run.
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|time| {
            u64::try_from(time.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(time.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}
