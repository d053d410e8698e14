//! What a caller asks for when acquiring, and its validation against a backend.

use std::time::Duration;

use crate::capabilities::{Capabilities, LeaseModel};
use crate::error::{Error, Result};

/// Options of one acquire: TTL, how long to wait, and automatic renewal.
///
/// ```
/// use std::time::Duration;
/// use lockkit_core::Acquire;
///
/// let options = Acquire::ttl(Duration::from_secs(30))
///     .wait(Duration::from_secs(5))
///     .auto_renew();
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acquire {
    ttl: Option<Duration>,
    wait: Option<Duration>,
    renewal: Option<Renewal>,
}

/// Automatic renewal of a held lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Renewal {
    /// How often to extend; by default a third of the TTL.
    pub every: Option<Duration>,
    /// Never extend the lease past this long after it was granted.
    pub max_hold: Option<Duration>,
}

impl Acquire {
    /// Options with this TTL, waiting as long as it takes, no renewal.
    pub fn ttl(ttl: Duration) -> Self {
        Self::default().with_ttl(ttl)
    }

    /// Sets the TTL (the [`Locker`](crate::Locker)'s default TTL applies if never set).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Waits at most `wait` for a held lock, then fails with
    /// [`Timeout`](crate::ErrorKind::Timeout). Without it, `acquire` waits as
    /// long as it takes. `try_acquire` never waits.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// Renews the lease automatically every third of its TTL until it is
    /// released or dropped.
    pub fn auto_renew(mut self) -> Self {
        self.renewal.get_or_insert_with(Renewal::default);
        self
    }

    /// Renews automatically every `every` (implies [`auto_renew`](Self::auto_renew)).
    pub fn renew_every(mut self, every: Duration) -> Self {
        self.renewal.get_or_insert_with(Renewal::default).every = Some(every);
        self
    }

    /// Stops automatic renewal from keeping the lease past `max_hold` after
    /// it was granted (implies [`auto_renew`](Self::auto_renew)).
    pub fn max_hold(mut self, max_hold: Duration) -> Self {
        self.renewal.get_or_insert_with(Renewal::default).max_hold = Some(max_hold);
        self
    }

    /// The TTL, if set.
    pub fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }

    /// The wait bound, if set.
    pub fn wait_value(&self) -> Option<Duration> {
        self.wait
    }

    /// The renewal policy, if renewal is on.
    pub fn renewal(&self) -> Option<Renewal> {
        self.renewal
    }

    /// Checks the options against `capabilities`, filling the TTL from
    /// `default_ttl`. Every refusal is `InvalidInput` naming the field.
    pub(crate) fn resolve(
        &self,
        capabilities: &Capabilities,
        default_ttl: Duration,
        backend: &'static str,
    ) -> Result<Resolved> {
        let ttl = self.ttl.unwrap_or(default_ttl);
        capabilities.check_ttl("ttl", ttl, backend)?;
        let renewal = match self.renewal {
            None => None,
            // A session backend renews by keeping its session alive.
            Some(_) if capabilities.lease == LeaseModel::Session => None,
            Some(_) if !capabilities.extend => {
                return Err(Error::unsupported(
                    backend,
                    "auto_renew: this backend cannot extend a held lock",
                ))
            }
            Some(renewal) => Some(renewal.resolve(ttl, backend)?),
        };
        Ok(Resolved { ttl, renewal })
    }
}

impl Renewal {
    fn resolve(self, ttl: Duration, backend: &'static str) -> Result<ResolvedRenewal> {
        let every = self.every.unwrap_or(ttl / 3);
        if every.is_zero() {
            return Err(Error::invalid_input(
                backend,
                "renew_every must be greater than zero",
            ));
        }
        if every >= ttl {
            return Err(Error::invalid_input(
                backend,
                format!("renew_every {every:?} must be shorter than the ttl {ttl:?}"),
            ));
        }
        if self.max_hold.is_some_and(|max_hold| max_hold.is_zero()) {
            return Err(Error::invalid_input(
                backend,
                "max_hold must be greater than zero",
            ));
        }
        Ok(ResolvedRenewal {
            ttl,
            every,
            max_hold: self.max_hold,
        })
    }
}

/// Acquire options after validation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    pub(crate) ttl: Duration,
    pub(crate) renewal: Option<ResolvedRenewal>,
}

/// A renewal policy after validation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ResolvedRenewal {
    pub(crate) ttl: Duration,
    pub(crate) every: Duration,
    pub(crate) max_hold: Option<Duration>,
}
