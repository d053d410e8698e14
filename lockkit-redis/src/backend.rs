//! [`RedisBackend`]: the lock operations over one multiplexed connection.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lockkit_core::{
    repeat, AcquireRequest, Background, Capabilities, Claim, Error, ErrorKind, Expiry, Fairness,
    FencingGuarantee, FencingToken, Grant, Holder, LeaseModel, LockBackend, LockName, LockStatus,
    OwnerToken, Result, SafetyClass, Undo, Wait, WaitMode, REPEAT_FOR,
};

use crate::error::{from_redis, unexpected_reply, BACKEND};
use crate::keys::LockKeys;
use crate::node::{lock_name, millis, GiveBack, Node, Operation};
use crate::options::{RedisConfig, RedisOptions, QUEUE_PLACE};
use crate::scripts::{self, AcquireReply, FastReply, QueueMode, Scripts};
use crate::subscriber::Subscriber;
use crate::waiters::Waiters;

/// Allowance for the server's clock running faster than ours, subtracted
/// from every validity window. Redis expires keys at millisecond precision
/// by its own clock.
const DRIFT: Duration = Duration::from_millis(10);

/// How often a waiter renews its place and re-checks, at most.
const RENEW_PLACE: Duration = Duration::from_millis(QUEUE_PLACE.as_millis() as u64 / 3);

/// Locks in one Redis server (or a primary with replicas).
///
/// Cheap to share: clone the [`Locker`](lockkit_core::Locker) holding it.
/// All commands go over one multiplexed connection that reconnects by
/// itself; waiters share one more, for pub/sub, opened at connect.
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    /// The server, and its command connection.
    node: Node,
    /// The subscriber and its waiters; `None` once closed.
    waiters: Mutex<Option<Arc<Waiters>>>,
    /// Where cancelled acquires leave their queue.
    background: Background,
    options: RedisOptions,
    capabilities: Capabilities,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("server", &self.inner.node.server())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `url` with a configuration's namespace and `[redis]`
    /// section, as the `lockkit` facade does; see [`connect`](Self::connect).
    pub async fn from_config(url: &str, namespace: &str, config: &RedisConfig) -> Result<Self> {
        Self::connect(url, RedisOptions::from_config(namespace, config)).await
    }

    /// Connects to `url` and checks the server (see the crate's "What
    /// connect checks"). Every form the driver accepts:
    /// `redis://[user:password@]host[:port][/db]` and `valkey://…`;
    /// `rediss://…` and `valkeys://…` for TLS (feature `tls`);
    /// `redis+unix:///path/redis.sock[?db=0&user=u&pass=p]`, `unix://…` and
    /// `valkey+unix://…` for a Unix socket.
    ///
    /// Fails with [`Config`](ErrorKind::Config) for a URL or options that
    /// cannot work (the message names the field) and
    /// [`Unavailable`](ErrorKind::Unavailable) if the server cannot be reached.
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Self> {
        let node = Node::connect(url, options.clone()).await?;
        let channel = format!(
            "{}:grants:{}",
            options.namespace,
            OwnerToken::generate()?.to_hex()
        );
        let mut capabilities = Capabilities::new(
            SafetyClass::Efficiency,
            FencingGuarantee::BestEffort,
            LeaseModel::Ttl,
            WaitMode::Notify,
            Fairness::Fifo,
        );
        capabilities.drift = DRIFT;
        capabilities.min_ttl = DRIFT * 2;
        capabilities.status = true;
        let user = node.user().to_owned();
        let backend = Self {
            inner: Arc::new(Inner {
                waiters: Mutex::new(Some(Arc::new(Waiters::new(
                    Arc::new(node.subscriber()),
                    channel,
                )))),
                node,
                background: Background::new(),
                options,
                capabilities,
            }),
        };
        backend.check_rights(&user).await?;
        Ok(backend)
    }

    /// Whether this user may do everything lockkit does, found by doing
    /// it once: publishing on the backend's hand-over channel, subscribing
    /// to it for good (the subscription waiters use), and running every
    /// script on every path — a grant, a queued waiter, an extension, a
    /// hand-over, a release, a withdrawal — on a lock of its own, whose keys
    /// are deleted after. An ACL that lacks a command, a key pattern or a
    /// channel (Redis 7 gives new users no channels) would otherwise show
    /// only at the first contended acquire, with the lock held. A replica
    /// the user could not see through `INFO` is refused here too.
    async fn check_rights(&self, user: &str) -> Result<()> {
        let server = self.inner.node.server();
        let waiters = self.waiters()?;
        let mut connection = self.inner.node.connection()?;
        let published = redis::cmd("PUBLISH")
            .arg(waiters.channel())
            .arg("")
            .query_async::<i64>(&mut connection)
            .await;
        if let Err(error) = published {
            return Err(self.refusal(user, "publish on its channel", error));
        }
        match waiters.subscribe().await {
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::Config => {
                return Err(self.rights_error(user, &error.to_string()))
            }
            Err(error) if error.kind() == ErrorKind::Backend => {
                return Err(Error::new(
                    ErrorKind::Config,
                    BACKEND,
                    format!(
                        "{server}: waiting acquires listen for hand-overs by Pub/Sub over \
                         RESP3, which this server does not serve ({error}); lockkit-redis \
                         needs Redis 6 or later (or Valkey), reached without a proxy that \
                         drops Pub/Sub"
                    ),
                ))
            }
            Err(error) => return Err(error),
        }
        let probe = format!("lockkit-connect-check:{}", OwnerToken::generate()?.to_hex());
        let keys = self.keys(&probe);
        let (holder, waiter) = (
            OwnerToken::generate()?.to_hex(),
            OwnerToken::generate()?.to_hex(),
        );
        let scripts = Scripts::get();
        let ttl = millis(Duration::from_secs(10));
        let place = millis(QUEUE_PLACE);
        let channel = waiters.channel();
        let steps = [
            scripts.try_acquire(&keys, &holder, ttl),
            scripts.acquire(&keys, &waiter, ttl, QueueMode::Wait, place, channel),
            scripts.extend(&keys, &holder, ttl),
            scripts.release(&keys, &holder),
            scripts.release(&keys, &waiter),
            scripts.leave(&keys, &waiter),
        ];
        let mut outcome = scripts::fast_acquire(&keys, &holder, ttl)
            .query_async::<redis::Value>(&mut connection)
            .await
            .map(drop);
        for step in &steps {
            if outcome.is_err() {
                break;
            }
            outcome = step
                .invoke_async::<redis::Value>(&mut connection)
                .await
                .map(drop);
        }
        let cleaned = redis::cmd("DEL")
            .arg(&keys.all()[..])
            .query_async::<i64>(&mut connection)
            .await;
        outcome
            .and(cleaned.map(drop))
            .map_err(|error| self.refusal(user, "run its lock commands", error))
    }

    /// The error for a probe step the server refused.
    fn refusal(&self, user: &str, what: &str, error: redis::RedisError) -> Error {
        let server = self.inner.node.server();
        let text = error.to_string();
        if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
            return Error::new(
                ErrorKind::Config,
                BACKEND,
                format!(
                    "{server}: url names a read-only replica (this user may not run INFO, which \
                     would name its primary): a lock must be written on the primary; point url \
                     at it"
                ),
            );
        }
        let refused = error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
            || text.contains("can't run this command")
            || text.contains("No permissions");
        if refused {
            return self.rights_error(user, &text);
        }
        from_redis(server, format!("check that lockkit may {what}"), error)
    }

    /// A `Config` error naming the rights lockkit needs, as one `ACL SETUSER`.
    fn rights_error(&self, user: &str, refused: &str) -> Error {
        let server = self.inner.node.server();
        let namespace = &self.inner.options.namespace;
        let wait = if self.inner.options.min_replicas > 0 {
            " +wait"
        } else {
            ""
        };
        let rights = format!(
            "+@connection +@scripting +get +set +del +exists +incr +incrby +pexpire +pttl +zadd +zrange \
             +zrem +hget +hset +hdel +time +publish +subscribe{wait}"
        );
        // An ACL pattern cannot hold whitespace or quotes; glob characters
        // of the namespace are escaped.
        let grant = if namespace.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            format!(
                "the namespace `{namespace}` holds a space or a quote, which no ACL pattern can \
                 match: choose another namespace, or grant `ACL SETUSER {user} ~* &* {rights}`"
            )
        } else {
            let mut escaped = String::new();
            for c in namespace.chars() {
                if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            format!(
                "grant them with `ACL SETUSER {user} ~{escaped}:* &{escaped}:grants:* {rights}`"
            )
        };
        Error::new(
            ErrorKind::Config,
            BACKEND,
            format!(
                "{server}: user `{user}` may not do all that lockkit does with keys `{namespace}:*` \
                 and channels `{namespace}:grants:*` ({refused}); a new Redis 7 user has no \
                 channels at all (acl-pubsub-default resetchannels). Refused now rather than at \
                 the first contended acquire: {grant}"
            ),
        )
    }

    /// The server, and its command connection: for Redlock, which runs its
    /// own steps on it beside this backend's.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// The subscriber connection to the server (its hand-over channel
    /// subscribed), to listen on more channels; `None` once closed.
    pub fn subscriber(&self) -> Option<Arc<Subscriber>> {
        let waiters = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waiters.as_ref().map(|waiters| waiters.subscriber().clone())
    }

    /// The server's address, as in error messages.
    pub fn server(&self) -> &str {
        self.inner.node.server()
    }

    /// The options this backend was connected with.
    pub fn options(&self) -> &RedisOptions {
        &self.inner.options
    }

    /// The subscriber and its waiters, or a non-retryable error once closed.
    fn waiters(&self) -> Result<Arc<Waiters>> {
        let waiters = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        waiters.clone().ok_or_else(|| self.inner.node.closed())
    }

    fn keys(&self, name: &str) -> LockKeys {
        self.inner.node.keys(name)
    }

    /// One acquire attempt.
    async fn attempt(
        &self,
        keys: &LockKeys,
        owner: &str,
        ttl: Duration,
        mode: QueueMode,
    ) -> Result<(AcquireReply, Instant)> {
        let scripts = Scripts::get();
        let ttl_ms = millis(ttl);
        let waiters = self.waiters()?;
        let invocation = scripts.acquire(
            keys,
            owner,
            ttl_ms,
            mode,
            millis(QUEUE_PLACE),
            waiters.channel(),
        );
        let what = Operation("acquire", keys);
        let sent = Instant::now();
        let (reply, acknowledged) = self
            .inner
            .node
            .run::<(i64, i64)>(&invocation, &what)
            .await?;
        let reply = AcquireReply::decode(reply)
            .ok_or_else(|| unexpected_reply(self.inner.node.server(), &what, reply))?;
        if let (AcquireReply::Granted(_), Some(acknowledged)) = (reply, acknowledged) {
            self.inner
                .node
                .require_replicas(keys, owner, acknowledged, &what, GiveBack::Grant)
                .await?;
        }
        Ok((reply, sent))
    }

    /// The uncontended acquire: [`scripts::fast_acquire`]'s two commands in
    /// one round trip (only without `min_replicas`).
    async fn fast_attempt(&self, keys: &LockKeys, owner: &str, ttl: Duration) -> Result<Fast> {
        let mut connection = self.inner.node.connection()?;
        let server = self.inner.node.server();
        let what = Operation("acquire", keys);
        let sent = Instant::now();
        let (set, token) = scripts::fast_acquire(keys, owner, millis(ttl))
            .query_async::<(Option<String>, i64)>(&mut connection)
            .await
            .map_err(|error| from_redis(server, &what, error))?;
        let reply = FastReply::decode(set.is_some(), token)
            .ok_or_else(|| unexpected_reply(server, &what, format!("{set:?}, {token}")))?;
        let valid_until = sent + ttl.saturating_sub(DRIFT);
        match reply {
            FastReply::Held => Ok(Fast::Held),
            // Its INCRBY may have run late; see scripts::fast_acquire.
            FastReply::Granted(token) if Instant::now() < valid_until => {
                self.grant(token, sent, ttl, false, keys).map(Fast::Granted)
            }
            FastReply::Granted(_) | FastReply::AheadOfQueue => {
                self.inner.node.release_script(keys, owner, &what).await?;
                Ok(Fast::ByScript)
            }
        }
    }

    /// The acquire by script: after a fast grant was given back (it waits in
    /// the queue it found, or takes the lock from a queue that was stale),
    /// or for every acquire with `min_replicas`.
    async fn scripted_acquire(
        &self,
        keys: &LockKeys,
        owner: &str,
        request: &AcquireRequest,
    ) -> Result<Grant> {
        let mode = match request.wait {
            Wait::No => QueueMode::Try,
            Wait::Until(_) | Wait::Forever => QueueMode::Wait,
        };
        let (reply, sent) = self.attempt(keys, owner, request.ttl, mode).await?;
        match (reply, request.wait) {
            (AcquireReply::Granted(token), _) => self.grant(token, sent, request.ttl, false, keys),
            (AcquireReply::Held(_), Wait::No) => Err(self.contended(keys)),
            (AcquireReply::Held(_), Wait::Until(deadline)) => {
                self.wait_for_grant(keys, owner, request.ttl, Some(deadline))
                    .await
            }
            (AcquireReply::Held(_), Wait::Forever) => {
                self.wait_for_grant(keys, owner, request.ttl, None).await
            }
        }
    }

    fn contended(&self, keys: &LockKeys) -> Error {
        Error::contended(
            BACKEND,
            "acquire",
            lock_name(keys),
            "another owner holds it, or waiters are queued for it",
        )
        .at(self.inner.node.server())
    }

    fn grant(
        &self,
        token: u64,
        sent: Instant,
        ttl: Duration,
        contended: bool,
        keys: &LockKeys,
    ) -> Result<Grant> {
        let token = FencingToken::new(token).ok_or_else(|| {
            unexpected_reply(
                self.inner.node.server(),
                Operation("acquire", keys),
                "fencing token 0",
            )
        })?;
        Ok(Grant {
            contended,
            ..Grant::new(token, Some(sent + ttl.saturating_sub(DRIFT)))
        })
    }

    async fn wait_for_grant(
        &self,
        keys: &LockKeys,
        owner: &str,
        ttl: Duration,
        deadline: Option<Instant>,
    ) -> Result<Grant> {
        let listener = self.waiters()?.listen(owner).await?;
        loop {
            // Also catches a hand-over published before the subscription held.
            let (reply, sent) = self.attempt(keys, owner, ttl, QueueMode::Wait).await?;
            let held_for = match reply {
                AcquireReply::Granted(token) => return self.grant(token, sent, ttl, true, keys),
                AcquireReply::Held(held_for) => held_for,
            };
            // The holder's expiry, unless a release comes first.
            let backstop = match held_for {
                Some(ms) => Duration::from_millis(ms + 1).min(RENEW_PLACE),
                None => RENEW_PLACE,
            };
            let wake = Instant::now() + backstop;
            let timer = deadline.map_or(wake, |deadline| wake.min(deadline));
            tokio::select! {
                token = listener.handed_over() => {
                    // The server saw the attempt sent at `sent` before it
                    // handed the lock over with this waiter's TTL, so the
                    // grant expires no earlier than `sent + ttl`. If much of
                    // that has passed, or replicas must acknowledge, the
                    // next attempt confirms it and restarts the TTL.
                    let valid_until = sent + ttl.saturating_sub(DRIFT);
                    let fresh = valid_until.saturating_duration_since(Instant::now()) >= ttl / 2;
                    if fresh && self.inner.options.min_replicas == 0 {
                        return self.grant(token, sent, ttl, true, keys);
                    }
                }
                () = tokio::time::sleep_until(timer.into()) => {}
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return self.last_try(keys, owner, ttl).await;
            }
        }
    }

    /// At the deadline: takes the lock if it was handed over meanwhile,
    /// else leaves the queue and reports the timeout.
    async fn last_try(&self, keys: &LockKeys, owner: &str, ttl: Duration) -> Result<Grant> {
        let (reply, sent) = self.attempt(keys, owner, ttl, QueueMode::Try).await?;
        if let AcquireReply::Granted(token) = reply {
            return self.grant(token, sent, ttl, true, keys);
        }
        self.inner.node.leave(keys, owner).await?;
        Err(Error::timeout(
            BACKEND,
            "acquire",
            lock_name(keys),
            "its holder kept it; this waiter left the queue",
        )
        .at(self.inner.node.server()))
    }
}

#[async_trait]
impl LockBackend for RedisBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> &Capabilities {
        &self.inner.capabilities
    }

    /// # Cancel safety
    ///
    /// Dropping the future at any await, or an error other than `Contended`
    /// or `Timeout`, leaves no lock held and no place in the queue beyond
    /// what an [`Undo`] clears: in the background it leaves the queue and
    /// passes on a lock granted meanwhile, repeated after a dropped
    /// connection for up to [`REPEAT_FOR`]. Where no runtime is reachable,
    /// a queue place expires within [`QUEUE_PLACE`] and a grant at its TTL.
    async fn acquire(&self, request: AcquireRequest) -> Result<Grant> {
        let keys = self.keys(request.name.as_str());
        let owner = request.owner.to_hex();
        // Until the grant is returned, a cancelled or failed acquire leaves
        // the queue and gives back a lock granted to it meanwhile. Without
        // it a cancelled waiter would keep its place for QUEUE_PLACE, and a
        // grant nobody will use would stay until its TTL.
        let abandon = Undo::new(
            &self.inner.background,
            (self, &keys, owner.as_str()),
            |(backend, keys, owner): (&Self, &LockKeys, &str)| {
                let (backend, keys, owner) = (backend.clone(), keys.clone(), owner.to_owned());
                // Owner-checked, so repeated after a dropped connection.
                async move {
                    let left = repeat::until_answered(Instant::now() + REPEAT_FOR, || {
                        backend.inner.node.leave(&keys, &owner)
                    })
                    .await;
                    if let Err(error) = left.outcome {
                        tracing::debug!(%error, "abandoned acquire could not leave the queue; its place expires");
                    }
                }
            },
            |_| {
                tracing::debug!(
                    "abandoned acquire with no runtime reachable; its queue place expires"
                )
            },
        );
        // The slower paths are boxed, so the common path's future stays small.
        // With `min_replicas` every grant waits for replicas anyway, and a
        // refused fast attempt would write (its INCRBY) and wait too.
        let fast = if self.inner.options.min_replicas == 0 {
            self.fast_attempt(&keys, &owner, request.ttl).await?
        } else {
            Fast::ByScript
        };
        let granted = match fast {
            Fast::Granted(grant) => Ok(grant),
            Fast::Held => match request.wait {
                Wait::No => Err(self.contended(&keys)),
                Wait::Until(deadline) => {
                    Box::pin(self.wait_for_grant(&keys, &owner, request.ttl, Some(deadline))).await
                }
                Wait::Forever => {
                    Box::pin(self.wait_for_grant(&keys, &owner, request.ttl, None)).await
                }
            },
            Fast::ByScript => Box::pin(self.scripted_acquire(&keys, &owner, &request)).await,
        };
        // Granted, or refused having left no place in the queue: nothing to give back.
        let failed = granted
            .as_ref()
            .is_err_and(|error| !matches!(error.kind(), ErrorKind::Contended | ErrorKind::Timeout));
        if !failed {
            abandon.disarm();
        }
        granted
    }

    async fn extend(&self, claim: &Claim, ttl: Duration) -> Result<Option<Instant>> {
        let keys = self.keys(claim.name.as_str());
        let owner = claim.owner.to_hex();
        let invocation = Scripts::get().extend(&keys, &owner, millis(ttl));
        let what = Operation("extend", &keys);
        let sent = Instant::now();
        let (code, acknowledged) = self.inner.node.run::<i64>(&invocation, &what).await?;
        self.inner.node.owner_check(code, &what)?;
        if let Some(acknowledged) = acknowledged {
            self.inner
                .node
                .require_replicas(&keys, &owner, acknowledged, &what, GiveBack::Nothing)
                .await?;
        }
        Ok(Some(sent + ttl.saturating_sub(DRIFT)))
    }

    async fn release(&self, claim: &Claim) -> Result<()> {
        let keys = self.keys(claim.name.as_str());
        let owner = claim.owner.to_hex();
        let what = Operation("release", &keys);
        let code = self.inner.node.release_script(&keys, &owner, &what).await?;
        self.inner.node.owner_check(code, &what)
    }

    /// The holder's remaining TTL (`PTTL`). Not its fencing token: the
    /// fence key also counts refused fast attempts and queue changes, so it
    /// is at or above the holder's token, not equal to it. Nor a grant time
    /// or who holds it, which Redis does not keep.
    async fn status(&self, name: &LockName) -> Result<LockStatus> {
        let keys = self.keys(name.as_str());
        Ok(match self.inner.node.holder(&keys).await? {
            Some((_, left)) => LockStatus::Held(Holder::new(Expiry::In(left))),
            None => LockStatus::Free,
        })
    }

    /// `redis_version` from `INFO server`; `Unsupported` when this user
    /// may not run `INFO`.
    async fn server_version(&self) -> Result<String> {
        self.inner.node.version().await?.ok_or_else(|| {
            Error::unsupported(
                BACKEND,
                "this user may not run INFO, which reports the version",
            )
            .at(self.inner.node.server())
        })
    }

    /// Refuses every later call, lets cancelled acquires leave their
    /// queues (for up to [`REPEAT_FOR`]), then drops both connections. Lock
    /// keys still held by leases not released through a
    /// [`Locker`](lockkit_core::Locker) expire at their TTL.
    async fn close(&self) -> Result<()> {
        let waiters = self
            .inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(waiters);
        if !self.inner.background.settle(REPEAT_FOR).await {
            tracing::warn!(
                server = self.inner.node.server(),
                "close: cancelled acquires still leaving their queues; closing anyway"
            );
        }
        self.inner.node.close();
        Ok(())
    }
}

/// How the uncontended acquire ended.
enum Fast {
    /// Granted and reported.
    Granted(Grant),
    /// Held by another owner; nothing was changed but a skipped token.
    Held,
    /// Go on by script: a grant ahead of queued waiters, or answered too
    /// late to trust, was given back — or `min_replicas` is set.
    ByScript,
}
