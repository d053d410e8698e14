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
//! ended by then, or another hold with a higher token had begun: the
//! writer may believe it holds the lock, and the resource must refuse it.

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
}

impl Event {
    fn at_ns(&self) -> u64 {
        match self {
            Self::Granted { at_ns, .. }
            | Self::Releasing { at_ns, .. }
            | Self::Lost { at_ns, .. }
            | Self::Write { at_ns, .. } => *at_ns,
        }
    }
}

/// What a history shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Grants.
    pub acquisitions: usize,
    /// Pairs of holds by different grants that intersect.
    pub overlaps: usize,
    /// Writes by a holder whose hold had ended or been overtaken.
    pub stale_tried: usize,
    /// Stale writes the resource refused: fencing saved it.
    pub stale_rejected: usize,
    /// Stale writes the resource accepted: the lock and its fence failed.
    pub stale_accepted: usize,
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
            Event::Write { .. } => {}
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
        let ended = own.is_none_or(|hold| hold.until <= at_ns);
        let overtaken = holds
            .iter()
            .any(|hold| hold.token > token && hold.from <= at_ns);
        if ended || overtaken {
            report.stale_tried += 1;
            if accepted {
                report.stale_accepted += 1;
            } else {
                report.stale_rejected += 1;
            }
        }
    }
    report
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
        assert_eq!(
            check(&history),
            Report {
                acquisitions: 2,
                ..Report::default()
            }
        );
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

        let broken = [
            granted(10, 1, 2),
            granted(14, 2, 4),
            write(16, 1, 2, true),
            releasing(17, 2, 4),
        ];
        let report = check(&broken);
        assert_eq!(report.stale_accepted, 1);
        assert_eq!(
            report.overlaps, 1,
            "client 1 never learned it lost the lock"
        );
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
