//! Who may use the client routes, for whom, and how fast: API keys (configured ones, and
//! keys issued per account, known from the log), when each was last used, and the order rate
//! limits that bound what one client can cost.

use super::error::ApiError;
use actix_web::http::StatusCode;
use chrono::{DateTime, Utc};
use flashrent_events::{ApiKeyId, KeyUse, UserId};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The prefix of every key flashrent issues (so a leaked one is recognisable in a scan).
pub const KEY_PREFIX: &str = "frk_";

/// A new key: the prefix and 32 random bytes in hex.
pub fn generate_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{KEY_PREFIX}{}", hex::encode(bytes))
}

/// What the log keeps of a key: the hex SHA-256 of its text. Keys are 256 random bits, so a
/// fast hash is enough (there is nothing to guess a key from).
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Whom a request's credentials let it act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No key is configured or was ever issued: client routes are open.
    Open,
    /// A configured key (`FLASHRENT_API_KEYS`), or an issued front-end key: any user.
    Frontend,
    /// An issued key of one user: that user only.
    User(UserId),
}

/// Which key let a request in, for its rate limit and its last use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// The n-th configured key.
    Configured(usize),
    Issued(ApiKeyId),
}

/// Whether any key was ever issued: once true it stays true (keys are revoked, never
/// deleted), so it is only looked up in the read models while false, at most every
/// [`Self::RECHECK`].
#[derive(Default)]
pub struct KeysIssued {
    known: AtomicBool,
    checked_at_ms: AtomicU64,
}

impl KeysIssued {
    const RECHECK: Duration = Duration::from_millis(200);

    pub fn get(&self, look_up: impl FnOnce() -> bool) -> bool {
        if self.known.load(Ordering::Acquire) {
            return true;
        }
        let now = epoch_ms();
        let last = self.checked_at_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) < Self::RECHECK.as_millis() as u64 {
            return false;
        }
        self.checked_at_ms.store(now, Ordering::Release);
        let issued = look_up();
        if issued {
            self.set();
        }
        issued
    }

    /// This instance issued one.
    pub fn set(&self) {
        self.known.store(true, Ordering::Release);
    }
}

fn epoch_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    // Offset by the interval, so the first call always looks.
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1_000
}

/// When each issued key was last let in by this instance, until it is recorded in the log.
#[derive(Default)]
pub struct KeyUsage {
    since_recorded: Mutex<HashMap<ApiKeyId, DateTime<Utc>>>,
}

impl KeyUsage {
    pub fn note(&self, key: ApiKeyId, at: DateTime<Utc>) {
        let mut used = self.since_recorded.lock().expect("usage lock");
        let last = used.entry(key).or_insert(at);
        *last = (*last).max(at);
    }

    /// The uses to record, taken out (put them back with [`KeyUsage::put_back`] if recording
    /// fails).
    pub fn take(&self) -> Vec<KeyUse> {
        let used = std::mem::take(&mut *self.since_recorded.lock().expect("usage lock"));
        used.into_iter()
            .map(|(key_id, at)| KeyUse { key_id, at })
            .collect()
    }

    pub fn put_back(&self, uses: Vec<KeyUse>) {
        for u in uses {
            self.note(u.key_id, u.at);
        }
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Orders per minute a user, and a key, may place; `None`: no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderRates {
    pub per_user: Option<NonZeroU32>,
    pub per_key: Option<NonZeroU32>,
}

/// The order rate limits: a token bucket per user and per key (GCRA, `governor`), each
/// refilling its minute's quota evenly and holding at most a minute's worth.
pub struct OrderLimits {
    per_user: Option<Keyed<UserId>>,
    per_key: Option<Keyed<KeyRef>>,
    clock: DefaultClock,
}

impl OrderLimits {
    pub fn new(rates: OrderRates) -> OrderLimits {
        OrderLimits {
            per_user: rates
                .per_user
                .map(|n| RateLimiter::hashmap(Quota::per_minute(n))),
            per_key: rates
                .per_key
                .map(|n| RateLimiter::hashmap(Quota::per_minute(n))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one order from the user's and the key's quota, or says how long to wait: 429
    /// `rate_limited` with `Retry-After`.
    pub fn check(&self, user: UserId, key: Option<KeyRef>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mut wait = Duration::ZERO;
        if let Some(limit) = &self.per_user {
            if let Err(not_until) = limit.check_key(&user) {
                wait = wait.max(not_until.wait_time_from(now));
            }
        }
        if let (Some(limit), Some(key)) = (&self.per_key, key) {
            if let Err(not_until) = limit.check_key(&key) {
                wait = wait.max(not_until.wait_time_from(now));
            }
        }
        if wait.is_zero() {
            return Ok(());
        }
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("下单过于频繁，请 {secs} 秒后重试"),
            format!("too many orders; retry in {secs} s"),
        )
        .with("retry_after_seconds", secs.into())
        .retry_after(secs))
    }

    /// Forgets buckets that are full again, so memory follows the clients of the last minute.
    pub fn prune(&self) {
        if let Some(l) = &self.per_user {
            l.retain_recent();
        }
        if let Some(l) = &self.per_key {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_quota_is_told_when_to_come_back_and_others_are_not() {
        let limits = OrderLimits::new(OrderRates {
            per_user: NonZeroU32::new(3),
            per_key: None,
        });
        let (a, b) = (UserId::parse("1").unwrap(), UserId::parse("2").unwrap());
        for _ in 0..3 {
            limits.check(a, None).unwrap();
        }
        let refused = limits.check(a, None).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, "rate_limited");
        limits.check(b, None).unwrap();
    }

    #[test]
    fn a_key_has_its_own_quota_across_users() {
        let limits = OrderLimits::new(OrderRates {
            per_user: None,
            per_key: NonZeroU32::new(2),
        });
        let key = Some(KeyRef::Configured(0));
        limits.check(UserId::parse("1").unwrap(), key).unwrap();
        limits.check(UserId::parse("2").unwrap(), key).unwrap();
        assert!(limits.check(UserId::parse("3").unwrap(), key).is_err());
        // Without a key only the user's quota counts.
        limits.check(UserId::parse("3").unwrap(), None).unwrap();
    }

    #[test]
    fn keys_are_kept_as_the_hash_of_their_text() {
        let key = generate_key();
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(key.len(), KEY_PREFIX.len() + 64);
        assert_ne!(generate_key(), key);
        assert_eq!(key_hash(&key), key_hash(&key));
        assert_eq!(key_hash(&key).len(), 64);
        assert!(!key_hash(&key).contains(&key[KEY_PREFIX.len()..]));
    }
}
