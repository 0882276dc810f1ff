//! Which events become notifications, what their body says, how it is signed, and how long
//! to wait before the next attempt. Pure: no I/O, no clock, no randomness of its own.

use chrono::{DateTime, Utc};
use flashrent_events::{Envelope, Event, OrderId, UserId};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use std::time::Duration;

/// What the notifier remembers of an order from its `OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    pub user_id: UserId,
    pub callback_url: Option<String>,
    pub out_trade_no: Option<String>,
}

impl OrderInfo {
    pub fn from_placed(event: &Event) -> Option<(OrderId, OrderInfo)> {
        match event {
            Event::OrderPlaced {
                order_id,
                user_id,
                callback_url,
                out_trade_no,
                ..
            } => Some((
                *order_id,
                OrderInfo {
                    user_id: *user_id,
                    callback_url: callback_url.clone(),
                    out_trade_no: out_trade_no.clone(),
                },
            )),
            _ => None,
        }
    }
}

/// A notification, ready to be sent to each of its receivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub event_id: uuid::Uuid,
    pub order_id: OrderId,
    /// `order.paid`, `order.processing`, `order.completed`, `order.failed`,
    /// `order.refunded` or `order.rental_ended`.
    pub kind: &'static str,
    /// The exact bytes POSTed (and signed).
    pub body: String,
}

/// The notification an event gives, if it is one the client cares about. `order` is what
/// its `OrderPlaced` said (it comes first in the same partition).
pub fn for_event(env: &Envelope, order: &OrderInfo) -> Option<Message> {
    let (order_id, kind, data) = match &env.event {
        Event::BalanceDebited {
            order_id,
            amount,
            balance_after,
            ..
        } => (
            *order_id,
            "order.paid",
            json!({"amount_sun": amount.as_sun(), "balance_after_sun": balance_after.as_sun()}),
        ),
        Event::OrderProcessing {
            order_id,
            supplier_wallet,
        } => (
            *order_id,
            "order.processing",
            json!({"supplier_wallet": supplier_wallet}),
        ),
        Event::OrderCompleted {
            order_id,
            transaction_hash,
            block_number,
            completed_at,
            rental_ends_at,
        } => (
            *order_id,
            "order.completed",
            json!({"transaction_hash": transaction_hash, "block_number": block_number,
                   "completed_at": completed_at, "rental_ends_at": rental_ends_at}),
        ),
        // Our words for the reason, never the event's detail (it may hold a node's text).
        Event::OrderFailed {
            order_id, reason, ..
        } => (
            *order_id,
            "order.failed",
            json!({"failure_reason": reason.code(), "failure_message": reason.message()}),
        ),
        Event::OrderRefunded {
            order_id, amount, ..
        } => (
            *order_id,
            "order.refunded",
            json!({"amount_sun": amount.as_sun()}),
        ),
        Event::RentalEnded {
            order_id,
            reclaim_transaction_hash,
            ended_at,
        } => (
            *order_id,
            "order.rental_ended",
            json!({"reclaim_transaction_hash": reclaim_transaction_hash, "ended_at": ended_at}),
        ),
        _ => return None,
    };
    let body = json!({
        "event_id": env.event_id,
        "event": kind,
        "occurred_at": env.occurred_at,
        "order_id": order_id,
        "user_id": order.user_id.to_string(),
        "out_trade_no": order.out_trade_no,
        "sequence": env.sequence,
        "data": data,
    });
    Some(Message {
        event_id: env.event_id,
        order_id,
        kind,
        body: body.to_string(),
    })
}

/// `sha256=<hex of HMAC-SHA256(body, secret)>`, the `X-Flashrent-Signature` header.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time (what a receiver does).
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// The wait before attempt `attempt + 1` after `attempt` failures: `base · 2^(attempt−1)`,
/// at most `max`, then "equal jitter" — a random point in its upper half, so receivers that
/// failed together do not all come back at once. `unit` is a random number in [0, 1).
pub fn backoff(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let d = exp.min(max);
    d / 2 + d.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

/// When a delivery is due, as Unix milliseconds.
pub fn due_at(now: DateTime<Utc>, wait: Duration) -> i64 {
    now.timestamp_millis() + wait.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_the_secret_and_not_without() {
        let sig = signature(b"s3cret", b"{\"a\":1}");
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(b"s3cret", b"{\"a\":1}", &sig));
        assert!(!verify(b"other", b"{\"a\":1}", &sig));
        assert!(!verify(b"s3cret", b"{\"a\":2}", &sig));
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231_test_case_2() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_in_the_upper_half() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        assert_eq!(backoff(1, base, max, 0.0), Duration::from_millis(50));
        assert_eq!(backoff(1, base, max, 0.999_999).as_millis(), 99);
        assert_eq!(backoff(3, base, max, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(30, base, max, 0.0), Duration::from_millis(2500));
        assert!(backoff(30, base, max, 0.5) <= max);
    }
}
