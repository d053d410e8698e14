//! What every backend's configuration section shares: durations written
//! with their unit (`30s`, `250ms`, `1m 30s`, parsed by `humantime`), read
//! the same way from TOML, JSON and the environment.
//!
//! A backend crate's section uses them as serde field attributes:
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(default, deny_unknown_fields)]
//! struct Section {
//!     #[serde(deserialize_with = "lockkit_core::settings::duration")]
//!     connect_timeout: Duration,
//! }
//!
//! impl Default for Section {
//!     fn default() -> Self {
//!         Self { connect_timeout: Duration::from_secs(2) }
//!     }
//! }
//! # let _ = Section::default().connect_timeout;
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};

use crate::conninfo::redact_url;

/// Parses a duration written with its unit: `30s`, `250ms`, `1m 30s`. The
/// refusal quotes the text through [`redact_url`], so a secret put in the
/// wrong field is not printed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let shown = redact_url(text);
    if trimmed.starts_with('-') {
        return Err(format!(
            "`{shown}` is negative; durations must be zero or more"
        ));
    }
    humantime::parse_duration(trimmed).map_err(|error| {
        format!("`{shown}` is not a duration such as \"30s\" or \"250ms\" ({error})")
    })
}

/// Deserializes a duration written with its unit (see [`parse_duration`]);
/// for `#[serde(deserialize_with = "lockkit_core::settings::duration")]`.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    struct DurationText;

    impl Visitor<'_> for DurationText {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration with its unit, such as \"30s\" or \"250ms\"")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_str(DurationText)
}
