//! The lock operations' server commands.
//!
//! An uncontended acquire is two plain commands in one pipeline,
//! [`fast_acquire`]; every other step is one Lua script. Each is one
//! round trip.
//!
//! Public so the Redlock backend runs the same commands on each of its nodes
//! rather than a copy. Each script takes `KEYS` in the order of
//! [`LockKeys::all`](crate::keys::LockKeys::all).
//!
//! Owner tokens are stored as hex text. Server time (`TIME`) is used only to
//! order and expire queue places, never for a lock's validity, which the
//! client measures on its own monotonic clock from the instant it sent the
//! request.

use std::sync::OnceLock;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, Script, ServerErrorKind};

use crate::keys::LockKeys;

/// Shared by every script: server time, fencing tokens, and handing a
/// free lock to the first live waiter.
///
/// The fence's parity says whether waiters queue: it is odd whenever the
/// queue key exists, so [`fast_acquire`] learns it from its `INCRBY`
/// without reading the queue. Every grant adds 2 (`grant_token`), keeping
/// the parity; the first waiter to queue makes it odd; a script that finds
/// the queue gone makes it even again (`settle`). A queue that expired by
/// itself leaves it odd until the next scripted grant: only slower, never
/// unfair. Every change adds to the fence, so tokens strictly increase.
///
/// `grant_to_next` drops waiters whose place expired, sets the lock to the
/// first live one with that waiter's TTL, takes a token and publishes
/// `<owner>:<token>` on the channel that waiter named (its backend's), so
/// the waiter holds the lock without another round trip. If the first live
/// waiter is `caller` it gets `ttl` and no message. Returns the new holder
/// and its token, or nil when nobody waits.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function settle()
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
  if fence % 2 == 1 then redis.call('INCR', KEYS[2]) end
end

local function grant_token()
  local token = redis.call('INCRBY', KEYS[2], 2)
  if token % 2 == 1 and redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('INCR', KEYS[2])
  end
  return token
end

local function grant_to_next(caller, ttl)
  local now = now_ms()
  while true do
    local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
    if not head then
      settle()
      return nil
    end
    local place = redis.call('HGET', KEYS[4], head)
    redis.call('ZREM', KEYS[3], head)
    redis.call('HDEL', KEYS[4], head)
    if head == caller then
      redis.call('SET', KEYS[1], head, 'PX', ttl)
      return head, grant_token()
    end
    if place then
      local expires, their_ttl, channel = string.match(place, '^(%d+) (%d+) (.+)$')
      if expires and tonumber(expires) > now then
        redis.call('SET', KEYS[1], head, 'PX', their_ttl)
        local token = grant_token()
        redis.call('PUBLISH', channel, head .. ':' .. token)
        return head, token
      end
    end
  end
end
"#;

/// ARGV: owner, ttl ms, wait (`1`: take a place in the queue if held),
/// place ms (how long the place lasts), channel (where to announce a
/// hand-over to this waiter).
///
/// Returns `{1, token}` when granted — including when a release already
/// handed the lock to this owner, whose TTL then restarts from this request —
/// or `{0, pttl}` with the holder's remaining TTL (-1: none, -2: no key).
/// A holder confirming a hand-over gets the fence's current value, at or
/// above the token it was handed (refused fast attempts skip tokens): still
/// above every earlier grant's, and below every later one's.
const ACQUIRE: &str = r#"
local owner, ttl = ARGV[1], ARGV[2]
local holder = redis.call('GET', KEYS[1])
if holder == owner then
  redis.call('PEXPIRE', KEYS[1], ttl)
  return {1, tonumber(redis.call('GET', KEYS[2]))}
end
if not holder then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('SET', KEYS[1], owner, 'PX', ttl)
    return {1, grant_token()}
  end
  local next, token = grant_to_next(owner, ttl)
  if not next then
    redis.call('SET', KEYS[1], owner, 'PX', ttl)
    return {1, grant_token()}
  end
  if next == owner then return {1, token} end
end
if ARGV[3] == '1' then
  local t = redis.call('TIME')
  local place = tonumber(ARGV[4])
  local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + place
  redis.call('ZADD', KEYS[3], 'NX', string.format('%s.%06d', t[1], tonumber(t[2])), owner)
  redis.call('HSET', KEYS[4], owner, string.format('%.0f %s %s', expires, ttl, ARGV[5]))
  redis.call('PEXPIRE', KEYS[3], place)
  redis.call('PEXPIRE', KEYS[4], place)
  local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
  if fence % 2 == 0 then redis.call('INCR', KEYS[2]) end
end
return {0, redis.call('PTTL', KEYS[1])}
"#;

/// ARGV: owner, ttl ms. Returns 1 (extended), 0 (the lock is free) or -1
/// (another owner holds it).
const EXTEND: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder then return -1 end
return 0
"#;

/// ARGV: owner. Deletes the lock if `owner` holds it and hands it
/// to the next live waiter. Returns 1 (released), 0 (the lock is free) or
/// -1 (another owner holds it).
///
/// The common release, with nobody queued, returns before the prelude's
/// functions are even defined: [`RELEASE_HANDOVER`] follows the prelude.
const RELEASE: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  if holder then return -1 end
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[3]) == 0 then return 1 end
"#;

/// The end of the release script, after the prelude: the hand-over.
const RELEASE_HANDOVER: &str = r#"
grant_to_next(false, 0)
return 1
"#;

/// ARGV: owner. A waiter giving up (deadline, cancellation):
/// leaves the queue and, if a release had already handed it the lock,
/// passes the lock on. Returns 1 if it had been handed the lock, else 0.
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  grant_to_next(false, 0)
  return 1
end
if redis.call('EXISTS', KEYS[3]) == 0 then settle() end
return 0
"#;

/// KEYS: lock, watched marker. ARGV: owner, channel. Deletes the lock if
/// `owner` holds it and, if waiters watch (the marker exists), publishes an
/// empty message on `channel`. Returns 1 (released), 0 (the lock is free)
/// or -1 (another owner holds it). No queue: Redlock's waiters retry.
const RELEASE_ANNOUNCED: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then
  if holder then return -1 end
  return 0
end
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PUBLISH', ARGV[2], '') end
return 1
"#;

/// ARGV: token. Raises the fence to at least `token` (Redlock writes a
/// grant's token back onto a majority this way). Returns the fence after.
const RAISE_FENCE: &str = r#"
local fence = tonumber(redis.call('GET', KEYS[1]) or '0')
local token = tonumber(ARGV[1])
if fence < token then
  redis.call('SET', KEYS[1], ARGV[1])
  return token
end
return fence
"#;

/// The uncontended acquire, without a script: `SET <lock> <owner> NX PX
/// <ttl_ms>` and `INCRBY <fence> 2`, pipelined. Decode the reply with
/// [`FastReply::decode`].
///
/// A script costs the server more than two plain commands (measured in
/// `lockkit-bench/README.md`), and most acquires find their lock free. So
/// this is what a hand-rolled `SET NX PX` lock sends, plus the fencing
/// token's increment. The price of going without a script:
///
/// - The `INCRBY` runs whether or not the `SET` did, so a refused attempt
///   skips a token. Tokens still strictly increase across grants.
/// - The two commands are not atomic. Redis runs them back to back when
///   they arrive in one read, but a split delivery could let the `INCRBY`
///   run late. A late `INCRBY` can only outrank a later grant's if it ran
///   after this grant's TTL ended. So a grant whose reply arrives after its
///   validity (TTL minus drift, from the instant the request was sent) must
///   be given back, never reported held.
/// - The `SET` does not see the queue. An odd token says waiters may be
///   queued (a holder's TTL ran out while they waited; see the fence's
///   parity in the scripts): [`FastReply::AheadOfQueue`] must be given back
///   with the release script, which hands the lock to the first waiter,
///   and the acquire go on by script.
pub fn fast_acquire(keys: &LockKeys, owner: &str, ttl_ms: u64) -> Pipeline {
    // Sized up front: on every acquire, each growth is an allocation.
    let mut set = Cmd::with_capacity(6, keys.lock().len() + owner.len() + 32);
    set.arg("SET")
        .arg(keys.lock())
        .arg(owner)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms);
    let mut increment = Cmd::with_capacity(3, keys.fence().len() + 8);
    increment.arg("INCRBY").arg(keys.fence()).arg(2);
    let mut pipeline = Pipeline::with_capacity(2);
    pipeline.add_command(set).add_command(increment);
    pipeline
}

/// The reply of [`fast_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastReply {
    /// The lock was free and nobody queued: granted, with this fencing token.
    Granted(u64),
    /// The lock was free but waiters may be queued: this owner now holds it
    /// ahead of them and must give it back (see [`fast_acquire`]).
    AheadOfQueue,
    /// Another owner holds the lock; nothing was set.
    Held,
}

impl FastReply {
    /// Decodes the replies of `SET … NX` (whether it set the key) and `INCRBY`.
    pub fn decode(set: bool, token: i64) -> Option<Self> {
        match (set, token) {
            (_, ..=0) => None,
            (false, _) => Some(Self::Held),
            (true, token) if token % 2 == 1 => Some(Self::AheadOfQueue),
            (true, token) => u64::try_from(token).ok().map(Self::Granted),
        }
    }
}

/// The compiled scripts (their SHA1 digests computed once per process).
#[derive(Debug)]
pub struct Scripts {
    acquire: Script,
    extend: Script,
    release: Script,
    leave: Script,
    raise_fence: Script,
    release_announced: Script,
}

/// What the acquire script asks of the queue when the lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMode {
    /// Do not queue: a held lock is simply reported.
    Try,
    /// Take (or renew) a place in the queue.
    Wait,
}

impl Scripts {
    /// The process-wide scripts.
    pub fn get() -> &'static Scripts {
        static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
        SCRIPTS.get_or_init(|| Scripts {
            acquire: Script::new(&format!("{PRELUDE}{ACQUIRE}")),
            extend: Script::new(EXTEND),
            release: Script::new(&format!("{RELEASE}{PRELUDE}{RELEASE_HANDOVER}")),
            leave: Script::new(&format!("{PRELUDE}{LEAVE}")),
            raise_fence: Script::new(RAISE_FENCE),
            release_announced: Script::new(RELEASE_ANNOUNCED),
        })
    }

    /// Grants the lock to `owner` for `ttl_ms` if it is free and nobody
    /// queues ahead; otherwise, with [`QueueMode::Wait`], takes a place in
    /// the queue for `place_ms`, to be told of a hand-over on `channel`. See
    /// [`AcquireReply`] for the reply.
    pub fn acquire<'a>(
        &'a self,
        keys: &LockKeys,
        owner: &str,
        ttl_ms: u64,
        mode: QueueMode,
        place_ms: u64,
        channel: &str,
    ) -> ScriptCall<'a> {
        let mut call = ScriptCall::new(&self.acquire, &keys.all(), 5);
        call.cmd
            .arg(owner)
            .arg(ttl_ms)
            .arg(u8::from(mode == QueueMode::Wait))
            .arg(place_ms)
            .arg(channel);
        call
    }

    /// Grants the lock to `owner` for `ttl_ms` if it is free and nobody
    /// queues ahead, without taking a place in the queue: the acquire
    /// script in [`QueueMode::Try`], for a client that waits some other way
    /// (Redlock retries across its nodes). See [`AcquireReply`].
    pub fn try_acquire<'a>(&'a self, keys: &LockKeys, owner: &str, ttl_ms: u64) -> ScriptCall<'a> {
        self.acquire(keys, owner, ttl_ms, QueueMode::Try, 0, "")
    }

    /// Restarts the lock's TTL at `ttl_ms` if `owner` holds it; replies an [`OwnerCheck`] code.
    pub fn extend<'a>(&'a self, keys: &LockKeys, owner: &str, ttl_ms: u64) -> ScriptCall<'a> {
        let mut call = ScriptCall::new(&self.extend, &[keys.lock()], 2);
        call.cmd.arg(owner).arg(ttl_ms);
        call
    }

    /// Releases the lock if `owner` holds it; replies an [`OwnerCheck`] code.
    pub fn release<'a>(&'a self, keys: &LockKeys, owner: &str) -> ScriptCall<'a> {
        let mut call = ScriptCall::new(&self.release, &keys.all(), 1);
        call.cmd.arg(owner);
        call
    }

    /// Releases the lock if `owner` holds it, and tells the waiters that
    /// watch it on [`LockKeys::released_channel`]; replies an
    /// [`OwnerCheck`] code. For Redlock: the lock's queue is not touched.
    pub fn release_announced<'a>(&'a self, keys: &LockKeys, owner: &str) -> ScriptCall<'a> {
        let watched = keys.watched();
        let mut call = ScriptCall::new(&self.release_announced, &[keys.lock(), &watched], 2);
        call.cmd.arg(owner).arg(keys.released_channel());
        call
    }

    /// Raises the lock's fence to at least `token`; replies the fence after.
    pub fn raise_fence<'a>(&'a self, keys: &LockKeys, token: u64) -> ScriptCall<'a> {
        let mut call = ScriptCall::new(&self.raise_fence, &[keys.fence()], 1);
        call.cmd.arg(token);
        call
    }

    /// Takes `owner` out of the queue, passing the lock on if it had been handed it.
    pub fn leave<'a>(&'a self, keys: &LockKeys, owner: &str) -> ScriptCall<'a> {
        let mut call = ScriptCall::new(&self.leave, &keys.all(), 1);
        call.cmd.arg(owner);
        call
    }
}

/// One call of a script: `EVALSHA` built straight into one command buffer
/// (redis' `ScriptInvocation` copies every key and argument first, a dozen
/// allocations per call on the release path), loaded by itself after a
/// `NOSCRIPT` (a restarted or flushed server).
#[derive(Debug, Clone)]
pub struct ScriptCall<'a> {
    script: &'a Script,
    cmd: Cmd,
}

impl<'a> ScriptCall<'a> {
    /// `EVALSHA <hash> <keys.len()> <keys…>`, with room for `args` more arguments.
    fn new(script: &'a Script, keys: &[&str], args: usize) -> Self {
        // Sized up front: the hash, the counts and the arguments (an owner
        // token, numbers, a channel name) fit without growing.
        let bytes = keys.iter().map(|key| key.len()).sum::<usize>() + 192;
        let mut cmd = Cmd::with_capacity(3 + keys.len() + args, bytes);
        cmd.arg("EVALSHA")
            .arg(script.get_hash())
            .arg(keys.len())
            .arg(keys);
        Self { script, cmd }
    }

    /// The `EVALSHA` command, to send in a pipeline; after a `NOSCRIPT`
    /// reply, [`load_async`](Self::load_async) and send it again.
    pub fn cmd(&self) -> &Cmd {
        &self.cmd
    }

    /// Loads the script into the server (`SCRIPT LOAD`).
    pub async fn load_async(&self, connection: &mut impl ConnectionLike) -> RedisResult<()> {
        self.script.load_async(connection).await.map(drop)
    }

    /// Runs the script, loading it first if the server does not have it.
    pub async fn invoke_async<T: FromRedisValue>(
        &self,
        connection: &mut impl ConnectionLike,
    ) -> RedisResult<T> {
        match self.cmd.query_async(connection).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load_async(connection).await?;
                self.cmd.query_async(connection).await
            }
            reply => reply,
        }
    }
}

/// The reply of the acquire script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireReply {
    /// Granted, with this fencing token.
    Granted(u64),
    /// Held by another owner (or handed to a waiter ahead), for this long
    /// in milliseconds; `None` if the key has no TTL or vanished meanwhile.
    Held(Option<u64>),
}

impl AcquireReply {
    /// Decodes the script's `{status, value}` pair.
    pub fn decode((status, value): (i64, i64)) -> Option<Self> {
        match status {
            1 => u64::try_from(value).ok().map(Self::Granted),
            0 => Some(Self::Held(u64::try_from(value).ok())),
            _ => None,
        }
    }
}

/// A hand-over message, as published on the waiter's channel: `<owner>:<token>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handover<'a> {
    /// The waiter the lock was handed to (hex owner token).
    pub owner: &'a str,
    /// Its fencing token.
    pub token: u64,
}

impl<'a> Handover<'a> {
    /// Decodes a message payload; `None` for anything else.
    pub fn decode(payload: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(payload).ok()?;
        let (owner, token) = text.split_once(':')?;
        Some(Self {
            owner,
            token: token.parse().ok()?,
        })
    }
}

/// The reply of the owner-checked scripts (extend, release).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerCheck {
    /// The owner held the lock; the operation was done.
    Done,
    /// Nobody holds the lock (it expired).
    Free,
    /// Another owner holds the lock now.
    Taken,
}

impl OwnerCheck {
    /// Decodes the script's `1 / 0 / -1` reply.
    pub fn decode(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Done),
            0 => Some(Self::Free),
            -1 => Some(Self::Taken),
            _ => None,
        }
    }
}
