//! One client, many tasks, one or two names: tries, waits with tiny
//! deadlines, cancelled acquires, releases and drops interleaved at random.
//! PostgreSQL's advisory locks are re-entrant per session, so only the
//! client's own record of what it holds, and on which session, keeps it from
//! granting a name twice. After every grant this checks that no other lease
//! of the name is held; at the end, that `pg_locks` holds exactly what the
//! client believes it holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockkit_core::{Acquire, Lease, Locker, OwnerToken};
use lockkit_postgres::{PostgresBackend, PostgresOptions};
use lockkit_testkit::{server_from_env, unique_namespace};
use tokio_postgres::Client;

mod common;
use common::{granted_at_server, lock_columns, raw};

const TTL: Duration = Duration::from_secs(60);

/// Locks held on the shared session throughout, to make its statements slow.
const BALLAST: usize = 2_000;

/// A small xorshift generator: the test needs variety, not quality.
struct Dice(u64);

impl Dice {
    fn new() -> Self {
        let seed = OwnerToken::generate().unwrap().to_hex();
        let seed = u64::from_str_radix(&seed[..16], 16).unwrap() | 1;
        eprintln!("seed {seed:#x}");
        Self(seed)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// How many leases of each name are held right now, by the test's count.
struct Holders(Vec<AtomicUsize>);

impl Holders {
    fn granted(&self, name: usize, lease: &Lease) {
        let before = self.0[name].fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            before,
            0,
            "`{}` granted (token {}) while another lease of it was held",
            lease.name(),
            lease.fencing_token()
        );
    }

    fn letting_go(&self, name: usize) {
        self.0[name].fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether `key` is still granted to some session of this client (its
/// application_name is lockkit's, and the test's admin connection is not).
async fn held_by_lockkit(admin: &Client, key: i64) -> bool {
    let (classid, objid) = lock_columns(key);
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 \
             AND l.objsubid = 1 AND l.granted AND a.application_name = 'lockkit')",
            &[&classid, &objid],
        )
        .await
        .unwrap()
        .get(0)
}

async fn run(locks: Locker, names: Arc<Vec<String>>, holders: Arc<Holders>, until: Instant) {
    let mut dice = Dice::new();
    let mut kept: Option<(usize, Lease)> = None;
    while Instant::now() < until {
        let name = dice.below(names.len() as u64) as usize;
        let options = Acquire::ttl(TTL);
        let lease = match dice.below(4) {
            0 => locks.try_acquire(&names[name], options).await.unwrap(),
            1 => {
                let wait = Duration::from_micros(dice.below(3_000));
                locks.acquire(&names[name], options.wait(wait)).await.ok()
            }
            2 => {
                // Cancelled at a random point of a longer wait.
                let patience = Duration::from_micros(dice.below(3_000));
                let acquire = locks.acquire(&names[name], options.wait(Duration::from_millis(50)));
                match tokio::time::timeout(patience, acquire).await {
                    Ok(granted) => granted.ok(),
                    Err(_) => None,
                }
            }
            _ => {
                if let Some((name, lease)) = kept.take() {
                    holders.letting_go(name);
                    lease.release().await.unwrap();
                }
                continue;
            }
        };
        let Some(lease) = lease else { continue };
        holders.granted(name, &lease);
        if let Some((name, lease)) = kept.take() {
            holders.letting_go(name);
            if dice.below(2) == 0 {
                lease.release().await.unwrap();
            } else {
                // Released in the background.
                drop(lease);
            }
        }
        if dice.below(3) == 0 {
            kept = Some((name, lease));
        } else {
            tokio::task::yield_now().await;
            holders.letting_go(name);
            lease.release().await.unwrap();
        }
    }
    if let Some((name, lease)) = kept {
        holders.letting_go(name);
        lease.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_never_grants_a_name_twice_under_any_interleaving() {
    let Some(url) = server_from_env("LOCKKIT_TEST_POSTGRES_URL") else {
        return;
    };
    for names in [1, 2] {
        let options = PostgresOptions::new()
            .namespace(unique_namespace())
            .sessions(1)
            .max_waiters(4);
        let backend = PostgresBackend::connect_with(&url, options).await.unwrap();
        let locks = Locker::new(backend.clone());
        let names: Arc<Vec<String>> =
            Arc::new((0..names).map(|i| format!("interleaved:{i}")).collect());
        let holders = Arc::new(Holders(
            (0..names.len()).map(|_| AtomicUsize::new(0)).collect(),
        ));
        // Ballast on the shared session, and a task keeping it busy with
        // extends (each a pg_locks scan): statements queue behind them there,
        // so a try stays in flight while waiter connections grant and
        // release — the window the double grant needed.
        let mut ballast = Vec::new();
        for i in 0..BALLAST {
            let name = format!("ballast:{i}");
            let lease = locks.try_acquire(&name, Acquire::ttl(TTL)).await.unwrap();
            ballast.push(lease.expect("ballast names are free"));
        }
        let until = Instant::now() + Duration::from_secs(4);
        let mut tasks = tokio::task::JoinSet::new();
        let busy = tokio::spawn(async move {
            while Instant::now() < until {
                for lease in ballast.iter().take(8) {
                    lease.extend(TTL).await.unwrap();
                }
            }
            ballast
        });
        for _ in 0..8 {
            tasks.spawn(run(
                locks.clone(),
                Arc::clone(&names),
                Arc::clone(&holders),
                until,
            ));
        }
        while let Some(joined) = tasks.join_next().await {
            joined.unwrap();
        }
        for lease in busy.await.unwrap() {
            lease.release().await.unwrap();
        }

        // Everything was released or dropped: once the background releases
        // of dropped leases and cancelled acquires have run, the server holds
        // nothing for this client. Nothing announces their end, so this polls.
        let admin = raw(&url).await;
        for name in names.iter() {
            let key = backend.key_of(name).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while held_by_lockkit(&admin, key).await {
                assert!(
                    Instant::now() < deadline,
                    "`{name}` is still granted at the server after every lease ended"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // And the client agrees: one lease per name, held exactly once.
            let lease = locks
                .try_acquire(name, Acquire::ttl(TTL))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("`{name}` is free at the server, but not to its client"));
            assert_eq!(granted_at_server(&admin, key).await, 1);
            assert!(locks
                .try_acquire(name, Acquire::ttl(TTL))
                .await
                .unwrap()
                .is_none());
            lease.release().await.unwrap();
            assert_eq!(
                granted_at_server(&admin, key).await,
                0,
                "one release left `{name}` held: it was stacked"
            );
        }
        locks.close().await.unwrap();
    }
}
