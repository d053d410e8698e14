//! A run's history and what it shows.
//!
//! Every client process and the fenced resource write [`Event`]s as JSON
//! lines, timed on the system-wide monotonic clock (`CLOCK_MONOTONIC`, in
//! nanoseconds, comparable across the processes of one host). [`check`]
//! reads the merged history.
//!
//! Judged conservatively: a client holds the lock from the instant the
//! grant's reply came ([`Event::Granted`]) until it sent its release
//! ([`Event::Releasing`]) or its lease reported Lost ([`Event::Lost`]),
//! whichever came first — or until the history ends. Two such holds that
//! intersect are an overlap. A write is *stale* when its writer's hold had
//! ended by then, or another client had been granted the lock after it:
//! the writer may believe it holds the lock. The fence can refuse a stale
//! write only once it has seen the lock move on — accepted a write of a
//! later grant. Before that, the stale write is *unseen*: accepted, and in
//! token order it comes before the later holder's writes, harmlessly (a
//! fence cannot know a grant nobody has written with). After that, a stale
//! write accepted interleaves two holders' writes at the resource: the lock
//! and its fence both failed. A write that is not stale but refused is a
//! holder's write refused: its token was below one accepted before (the
//! tokens went backwards).

use serde::{Deserialize, Serialize};

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The acquire's reply came: `client` holds the lock with `token`.
    Granted {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
        /// The grant's fencing token.
        token: u64,
    },
    /// The client sent the release of its grant of `token`.
    Releasing {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
        /// The grant's fencing token.
        token: u64,
    },
    /// The client's lease of `token` reported Lost.
    Lost {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
        /// The grant's fencing token.
        token: u64,
    },
    /// The fenced resource's verdict on a write: `accepted` iff `token` was
    /// at least the highest token it had accepted.
    Write {
        /// When the resource decided, in ns of the monotonic clock.
        at_ns: u64,
        /// The writing client.
        client: u32,
        /// The token the write carried.
        token: u64,
        /// The client's operation number.
        op: u64,
        /// Whether the resource accepted it.
        accepted: bool,
    },
    /// An acquire failed (the server was down, a timeout): the client
    /// tries again.
    Failed {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
        /// The error, as the client printed it.
        error: String,
    },
    /// The client's grant of `token` is a long turn (a nemesis asked for
    /// one): the fault may strike now. The checker ignores it.
    LongTurn {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
        /// The grant's fencing token.
        token: u64,
    },
    /// The harness killed the client's process: every hold of it ends here.
    Killed {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The client process.
        client: u32,
    },
    /// The nemesis began its fault.
    FaultStarted {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
        /// The scenario's name.
        fault: String,
        /// The client the fault aimed at, if it aimed at one (a paused or
        /// killed client); otherwise the holder at `at_ns` is its victim.
        victim: Option<u32>,
    },
    /// The nemesis healed its fault (equal to the start for a fault that is
    /// one instant, a kill).
    FaultEnded {
        /// When, in ns of the monotonic clock.
        at_ns: u64,
    },
}

impl Event {
    fn at_ns(&self) -> u64 {
        match self {
            Self::Granted { at_ns, .. }
            | Self::Releasing { at_ns, .. }
            | Self::Lost { at_ns, .. }
            | Self::Write { at_ns, .. }
            | Self::Failed { at_ns, .. }
            | Self::Killed { at_ns, .. }
            | Self::LongTurn { at_ns, .. }
            | Self::FaultStarted { at_ns, .. }
            | Self::FaultEnded { at_ns } => *at_ns,
        }
    }
}

/// What a history shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Grants.
    pub acquisitions: usize,
    /// Pairs of holds by different grants that intersect.
    pub overlaps: usize,
    /// Writes by a holder whose hold had ended, or after another client's
    /// grant: the sum of the next three.
    pub stale_tried: usize,
    /// Stale writes accepted before any write of a later grant was: the
    /// fence could not know them, and they precede the later holder's
    /// writes in token order.
    pub stale_unseen: usize,
    /// Stale writes the resource refused: fencing saved it.
    pub stale_rejected: usize,
    /// Stale writes the resource accepted after it had accepted a write of
    /// a later grant: two holders' writes interleaved; the lock and its
    /// fence failed.
    pub stale_accepted: usize,
    /// Writes by a client that still held the lock, refused because a
    /// higher token had been accepted before: the tokens went backwards.
    pub valid_rejected: usize,
    /// Acquires that failed with an error.
    pub acquire_errors: usize,
    /// From the fault's start to its victim's lease reporting Lost, in ms;
    /// `None` without a fault, a victim, or a Lost.
    pub lost_after_ms: Option<f64>,
    /// From the fault's start to the next grant to another client, in ms.
    pub regranted_after_ms: Option<f64>,
    /// Grants per second before the fault (the whole run without one).
    pub rate_before: Option<f64>,
    /// Grants per second while the fault lasted (`None` for an instant).
    pub rate_during: Option<f64>,
    /// Grants per second after the fault healed, to the history's end.
    pub rate_after: Option<f64>,
}

/// One hold: a grant, from its reply to its end.
#[derive(Debug, Clone, Copy)]
struct Hold {
    client: u32,
    token: u64,
    from: u64,
    /// `u64::MAX` while it had not ended when the history did.
    until: u64,
}

/// Parses a history, one JSON event per line (blank lines skipped); an
/// error names the line and what is wrong with it.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|error| format!("line {}: {error}", index + 1))
        })
        .collect()
}

/// Checks a history (in any order: it is sorted by time here).
pub fn check(events: &[Event]) -> Report {
    let mut events = events.to_vec();
    events.sort_by_key(Event::at_ns);
    let mut holds: Vec<Hold> = Vec::new();
    for event in &events {
        match *event {
            Event::Granted {
                at_ns,
                client,
                token,
            } => holds.push(Hold {
                client,
                token,
                from: at_ns,
                until: u64::MAX,
            }),
            Event::Releasing {
                at_ns,
                client,
                token,
            }
            | Event::Lost {
                at_ns,
                client,
                token,
            } => {
                if let Some(hold) = holds
                    .iter_mut()
                    .rev()
                    .find(|hold| hold.client == client && hold.token == token)
                {
                    hold.until = hold.until.min(at_ns);
                }
            }
            Event::Killed { at_ns, client } => {
                for hold in holds.iter_mut().filter(|hold| hold.client == client) {
                    hold.until = hold.until.min(at_ns);
                }
            }
            _ => {}
        }
    }
    let mut report = Report {
        acquisitions: holds.len(),
        ..Report::default()
    };
    for (index, hold) in holds.iter().enumerate() {
        report.overlaps += holds[index + 1..]
            .iter()
            .filter(|other| other.from < hold.until && hold.from < other.until)
            .count();
    }
    for event in &events {
        let Event::Write {
            at_ns,
            client,
            token,
            accepted,
            ..
        } = *event
        else {
            continue;
        };
        let own = holds
            .iter()
            .rev()
            .find(|hold| hold.client == client && hold.token == token && hold.from <= at_ns);
        // Ended, or another client was granted after it: either way the
        // lock had moved on, whatever the tokens say.
        let stale = own.is_none_or(|own| {
            own.until <= at_ns
                || holds
                    .iter()
                    .any(|hold| hold.client != client && hold.from > own.from && hold.from <= at_ns)
        });
        if stale {
            report.stale_tried += 1;
            if !accepted {
                report.stale_rejected += 1;
            } else if own.is_some_and(|own| later_write_accepted(&events, &holds, own, at_ns)) {
                report.stale_accepted += 1;
            } else {
                report.stale_unseen += 1;
            }
        } else if !accepted {
            report.valid_rejected += 1;
        }
    }
    report.acquire_errors = events
        .iter()
        .filter(|event| matches!(event, Event::Failed { .. }))
        .count();
    fault_figures(&events, &holds, &mut report);
    report
}

/// Whether the resource accepted, before `at_ns`, a write of a grant made
/// to another client after `own`.
fn later_write_accepted(events: &[Event], holds: &[Hold], own: &Hold, at_ns: u64) -> bool {
    events.iter().any(|event| match *event {
        Event::Write {
            at_ns: when,
            client,
            token,
            accepted: true,
            ..
        } if when < at_ns && client != own.client => holds
            .iter()
            .any(|hold| hold.client == client && hold.token == token && hold.from > own.from),
        _ => false,
    })
}

/// The fault's figures: how soon its victim learned, how soon the lock
/// moved on, and the grant rate around it.
fn fault_figures(events: &[Event], holds: &[Hold], report: &mut Report) {
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return;
    };
    let (first, last) = (first.at_ns(), last.at_ns());
    let rate = |from: u64, until: u64| {
        (until > from).then(|| {
            let grants = holds
                .iter()
                .filter(|hold| hold.from >= from && hold.from < until)
                .count();
            grants as f64 / ((until - from) as f64 / 1e9)
        })
    };
    let started = events.iter().find_map(|event| match event {
        Event::FaultStarted { at_ns, victim, .. } => Some((*at_ns, *victim)),
        _ => None,
    });
    let Some((start, victim)) = started else {
        report.rate_before = rate(first, last);
        return;
    };
    let end = events
        .iter()
        .find_map(|event| match event {
            Event::FaultEnded { at_ns } if *at_ns >= start => Some(*at_ns),
            _ => None,
        })
        .unwrap_or(last);
    let ms = |later: u64| (later - start) as f64 / 1e6;
    let victim = victim.or_else(|| {
        holds
            .iter()
            .find(|hold| hold.from <= start && start < hold.until)
            .map(|hold| hold.client)
    });
    if let Some(victim) = victim {
        report.lost_after_ms = events.iter().find_map(|event| match event {
            Event::Lost { at_ns, client, .. } if *client == victim && *at_ns >= start => {
                Some(ms(*at_ns))
            }
            _ => None,
        });
    }
    // After the grant the fault struck too: a fault may start before its
    // victim's long turn is granted (the failover cuts the replica off
    // first, the Redlock scenario takes two nodes down first).
    let struck = victim.and_then(|victim| {
        events.iter().rev().find_map(|event| match *event {
            Event::LongTurn {
                at_ns,
                client,
                token,
            } if client == victim && at_ns <= end => holds
                .iter()
                .find(|hold| hold.client == victim && hold.token == token)
                .map(|hold| hold.from),
            _ => None,
        })
    });
    let since = struck.map_or(start, |from| from.max(start));
    report.regranted_after_ms = holds
        .iter()
        .find(|hold| hold.from >= since && Some(hold.client) != victim)
        .map(|hold| (hold.from - since) as f64 / 1e6);
    report.rate_before = rate(first, start);
    report.rate_during = rate(start, end);
    report.rate_after = rate(end, last);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn granted(at_ns: u64, client: u32, token: u64) -> Event {
        Event::Granted {
            at_ns,
            client,
            token,
        }
    }

    fn releasing(at_ns: u64, client: u32, token: u64) -> Event {
        Event::Releasing {
            at_ns,
            client,
            token,
        }
    }

    fn lost(at_ns: u64, client: u32, token: u64) -> Event {
        Event::Lost {
            at_ns,
            client,
            token,
        }
    }

    fn write(at_ns: u64, client: u32, token: u64, accepted: bool) -> Event {
        Event::Write {
            at_ns,
            client,
            token,
            op: at_ns,
            accepted,
        }
    }

    #[test]
    fn a_clean_history_shows_nothing() {
        let history = [
            granted(10, 1, 2),
            write(11, 1, 2, true),
            write(12, 1, 2, true),
            releasing(13, 1, 2),
            granted(14, 2, 4),
            write(15, 2, 4, true),
            releasing(16, 2, 4),
        ];
        let report = check(&history);
        assert_eq!(
            report,
            Report {
                acquisitions: 2,
                rate_before: report.rate_before,
                ..Report::default()
            }
        );
        assert!(report.rate_before.is_some_and(|rate| rate > 0.0));
    }

    #[test]
    fn two_holds_at_once_are_an_overlap() {
        let history = [
            granted(10, 1, 2),
            granted(12, 2, 4),
            releasing(13, 1, 2),
            releasing(14, 2, 4),
        ];
        assert_eq!(check(&history).overlaps, 1);
    }

    #[test]
    fn a_hold_never_ended_lasts_to_the_end() {
        let history = [granted(10, 1, 2), granted(20, 2, 4)];
        assert_eq!(check(&history).overlaps, 1);
    }

    #[test]
    fn a_paused_holders_late_write_is_stale_and_the_fence_decides() {
        // Client 1 is paused past its TTL: its lease is Lost at 13, client
        // 2 holds token 4 from 14, and client 1 wakes and writes with 2.
        let saved = [
            granted(10, 1, 2),
            lost(13, 1, 2),
            granted(14, 2, 4),
            write(15, 2, 4, true),
            write(16, 1, 2, false),
            releasing(17, 2, 4),
        ];
        let report = check(&saved);
        assert_eq!((report.stale_tried, report.stale_rejected), (1, 1));
        assert_eq!(report.stale_accepted, 0);
        assert_eq!(report.overlaps, 0, "a Lost lease's hold ended at Lost");

        // Before client 2 wrote, the fence could not know: unseen.
        let unseen = [
            granted(10, 1, 2),
            lost(13, 1, 2),
            granted(14, 2, 4),
            write(15, 1, 2, true),
            write(16, 2, 4, true),
            releasing(17, 2, 4),
        ];
        let report = check(&unseen);
        assert_eq!((report.stale_tried, report.stale_unseen), (1, 1));
        assert_eq!(report.stale_accepted, 0);

        // A broken fence: it took the stale write after client 2's.
        let broken = [
            granted(10, 1, 2),
            granted(14, 2, 4),
            write(15, 2, 4, true),
            write(16, 1, 2, true),
            releasing(17, 2, 4),
        ];
        let report = check(&broken);
        assert_eq!((report.stale_accepted, report.stale_unseen), (1, 0));
        assert_eq!(
            report.overlaps, 1,
            "client 1 never learned it lost the lock"
        );
    }

    #[test]
    fn a_killed_clients_holds_end_at_its_kill() {
        let mut history = vec![granted(10, 1, 2), granted(30, 2, 4), releasing(40, 2, 4)];
        assert_eq!(
            check(&history).overlaps,
            1,
            "without the kill it never ended"
        );
        history.push(Event::Killed {
            at_ns: 20,
            client: 1,
        });
        assert_eq!(check(&history).overlaps, 0);
    }

    #[test]
    fn a_later_grant_makes_a_write_stale_whatever_the_tokens_say() {
        // A failover's split brain: client 2 is granted a lower token
        // while client 1 still holds; client 1's write after that is
        // stale, and the resource took it; client 2's is its own, refused.
        let history = [
            granted(10, 1, 100),
            write(11, 1, 100, true),
            granted(20, 2, 98),
            write(21, 1, 100, true),
            write(22, 2, 98, false),
            lost(30, 1, 100),
            releasing(31, 2, 98),
        ];
        let report = check(&history);
        assert_eq!(report.overlaps, 1);
        assert_eq!((report.stale_tried, report.stale_unseen), (1, 1));
        assert_eq!(report.valid_rejected, 1, "the tokens went backwards");

        // A repeated token: client 2 is granted client 1's token again,
        // and the fence lets the two holders' writes interleave.
        let history = [
            granted(10, 1, 100),
            granted(20, 2, 100),
            write(21, 2, 100, true),
            write(22, 1, 100, true),
            lost(30, 1, 100),
            releasing(31, 2, 100),
        ];
        let report = check(&history);
        assert_eq!((report.stale_tried, report.stale_accepted), (1, 1));
    }

    #[test]
    fn the_fault_figures_time_the_victim_and_the_lock() {
        const MS: u64 = 1_000_000;
        let failed = Event::Failed {
            at_ns: 1_500 * MS,
            client: 3,
            error: "down".to_owned(),
        };
        let history = [
            granted(0, 1, 2),
            releasing(500 * MS, 1, 2),
            granted(1_000 * MS, 2, 4),
            Event::FaultStarted {
                at_ns: 1_000 * MS,
                fault: "server-kill".to_owned(),
                victim: None,
            },
            failed,
            lost(1_250 * MS, 2, 4),
            granted(1_600 * MS, 3, 6),
            Event::FaultEnded { at_ns: 2_000 * MS },
            releasing(2_500 * MS, 3, 6),
            granted(2_500 * MS, 1, 8),
            releasing(3_000 * MS, 1, 8),
        ];
        let report = check(&history);
        assert_eq!(
            report.lost_after_ms,
            Some(250.0),
            "the holder at the start is the victim"
        );
        assert_eq!(report.regranted_after_ms, Some(600.0));
        assert_eq!(report.acquire_errors, 1);
        assert_eq!(
            report.rate_before,
            Some(1.0),
            "one grant in the first second"
        );
        assert_eq!(
            report.rate_during,
            Some(2.0),
            "two grants in the fault's second"
        );
        assert_eq!(report.rate_after, Some(1.0));
    }

    #[test]
    fn the_lock_moves_on_after_the_grant_the_fault_struck() {
        // Two nodes go down at 100; the victim's long turn is granted at
        // 300; another client is granted at 350 (the split) and 900.
        let history = [
            Event::FaultStarted {
                at_ns: 100,
                fault: "majority-restart".to_owned(),
                victim: Some(1),
            },
            granted(120, 2, 2),
            releasing(130, 2, 2),
            granted(300, 1, 4),
            Event::LongTurn {
                at_ns: 301,
                client: 1,
                token: 4,
            },
            granted(350, 2, 3),
            Event::FaultEnded { at_ns: 400 },
            lost(500, 1, 4),
            releasing(600, 2, 3),
        ];
        let report = check(&history);
        assert_eq!(
            report.regranted_after_ms,
            Some(50.0 / 1e6),
            "from the struck grant"
        );
        assert_eq!(report.lost_after_ms, Some(400.0 / 1e6));
    }

    #[test]
    fn histories_parse_from_json_lines_and_errors_name_the_line() {
        let text = r#"{"event":"granted","at_ns":1,"client":1,"token":2}

{"event":"write","at_ns":2,"client":1,"token":2,"op":7,"accepted":true}
"#;
        assert_eq!(
            parse(text),
            Ok(vec![granted(1, 1, 2), {
                Event::Write {
                    at_ns: 2,
                    client: 1,
                    token: 2,
                    op: 7,
                    accepted: true,
                }
            }])
        );
        let refused = parse("{\"event\":\"granted\",\"at_ns\":1,\"client\":1}\n");
        assert!(
            refused
                .as_ref()
                .is_err_and(|error| error.starts_with("line 1") && error.contains("token")),
            "{refused:?}"
        );
    }
}
