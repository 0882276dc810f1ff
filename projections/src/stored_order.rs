//! An order as the read model stores it, in two lines of JSON: first the API's order body,
//! exactly as `GET /api/orders/{id}` serves it, then what only the saga reads (the signed
//! transactions and how far they got), never shown.
//!
//! The hottest read of the API is then a copy of stored bytes, with no decoding of the view
//! and no encoding of a body; the saga and the projector decode both lines back into an
//! [`OrderView`]. Compact JSON never holds a raw newline, so the first one ends the body.

use crate::views::OrderView;
use chrono::{DateTime, Utc};
use flashrent_events::{
    EnergyAmount, FailureReason, OrderId, OrderKind, RentalDuration, Sun, TronAddress, UserId,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The seed's order shape (§7.1) and what users of rental platforms expect beside it.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    order_id: OrderId,
    #[serde(borrow)]
    status: Cow<'a, str>,
    #[serde(with = "user_text")]
    user_id: UserId,
    energy_amount: EnergyAmount,
    duration: RentalDuration,
    receive_address: TronAddress,
    #[serde(with = "trx_number")]
    cost_trx: Sun,
    cost_sun: u64,
    #[serde(borrow)]
    transaction_hash: Option<Cow<'a, str>>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    estimated_completion: DateTime<Utc>,
    kind: OrderKind,
    paid: bool,
    supplier_wallet: Option<TronAddress>,
    #[serde(borrow)]
    pending_transaction: Option<Cow<'a, str>>,
    block_number: Option<u64>,
    failure_reason: Option<FailureReason>,
    #[serde(borrow)]
    failure_message: Option<Cow<'a, str>>,
    failed_at: Option<DateTime<Utc>>,
    refunded_at: Option<DateTime<Utc>>,
    rental_ends_at: Option<DateTime<Utc>>,
    rental_ended_at: Option<DateTime<Utc>>,
    #[serde(borrow)]
    reclaim_transaction_hash: Option<Cow<'a, str>>,
    updated_at: DateTime<Utc>,
}

/// The saga's working state of the order: signed transactions before they settle. Only
/// what is set is written (most of it is empty most of the time, and every byte of a
/// stored order is copied again at each change of its sled page).
#[derive(Serialize, Deserialize)]
struct Working<'a> {
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    pending_signed_tx: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broadcast_at: Option<DateTime<Utc>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    reclaim_transaction: Option<Cow<'a, str>>,
    #[serde(borrow, skip_serializing_if = "Option::is_none")]
    reclaim_signed_tx: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reclaim_expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    reclaim_broadcast: bool,
}

fn borrowed(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

fn owned(s: Option<Cow<'_, str>>) -> Option<String> {
    s.map(Cow::into_owned)
}

impl OrderView {
    fn body(&self) -> Body<'_> {
        Body {
            order_id: self.order_id,
            status: Cow::Borrowed(&self.status),
            user_id: self.user_id,
            energy_amount: self.energy_amount,
            duration: self.duration,
            receive_address: self.receive_address,
            cost_trx: self.price,
            cost_sun: self.price.as_sun(),
            transaction_hash: borrowed(&self.transaction_hash),
            created_at: self.created_at,
            completed_at: self.completed_at,
            estimated_completion: self.estimated_completion,
            kind: self.kind,
            paid: self.paid,
            supplier_wallet: self.supplier_wallet,
            pending_transaction: borrowed(&self.pending_transaction),
            block_number: self.block_number,
            failure_reason: self.failure_reason,
            failure_message: borrowed(&self.failure_detail),
            failed_at: self.failed_at,
            refunded_at: self.refunded_at,
            rental_ends_at: self.rental_ends_at,
            rental_ended_at: self.rental_ended_at,
            reclaim_transaction_hash: borrowed(&self.reclaim_transaction_hash),
            updated_at: self.updated_at,
        }
    }

    /// The API's JSON body of the order.
    pub fn body_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).expect("an order body serializes")
    }

    /// The stored form: the body, a newline, the saga's working state.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body_json();
        out.push(b'\n');
        let working = Working {
            pending_signed_tx: borrowed(&self.pending_signed_tx),
            pending_expires_at: self.pending_expires_at,
            broadcast_at: self.broadcast_at,
            reclaim_transaction: borrowed(&self.reclaim_transaction),
            reclaim_signed_tx: borrowed(&self.reclaim_signed_tx),
            reclaim_expires_at: self.reclaim_expires_at,
            reclaim_broadcast: self.reclaim_broadcast,
        };
        serde_json::to_writer(&mut out, &working).expect("an order's working state serializes");
        out
    }

    pub fn decode(stored: &[u8]) -> Result<OrderView, serde_json::Error> {
        let (body, working) = lines(stored).ok_or_else(|| {
            <serde_json::Error as serde::de::Error>::custom("a stored order has two lines")
        })?;
        let b: Body = serde_json::from_slice(body)?;
        let w: Working = serde_json::from_slice(working)?;
        if b.cost_sun != b.cost_trx.as_sun() {
            return Err(serde::de::Error::custom("cost_trx and cost_sun differ"));
        }
        Ok(OrderView {
            order_id: b.order_id,
            user_id: b.user_id,
            kind: b.kind,
            status: b.status.into_owned(),
            energy_amount: b.energy_amount,
            duration: b.duration,
            receive_address: b.receive_address,
            price: b.cost_trx,
            paid: b.paid,
            created_at: b.created_at,
            estimated_completion: b.estimated_completion,
            updated_at: b.updated_at,
            supplier_wallet: b.supplier_wallet,
            pending_transaction: owned(b.pending_transaction),
            pending_signed_tx: owned(w.pending_signed_tx),
            pending_expires_at: w.pending_expires_at,
            broadcast_at: w.broadcast_at,
            transaction_hash: owned(b.transaction_hash),
            block_number: b.block_number,
            completed_at: b.completed_at,
            rental_ends_at: b.rental_ends_at,
            failure_reason: b.failure_reason,
            failure_detail: owned(b.failure_message),
            failed_at: b.failed_at,
            refunded_at: b.refunded_at,
            reclaim_transaction: owned(w.reclaim_transaction),
            reclaim_signed_tx: owned(w.reclaim_signed_tx),
            reclaim_expires_at: w.reclaim_expires_at,
            reclaim_broadcast: w.reclaim_broadcast,
            reclaim_transaction_hash: owned(b.reclaim_transaction_hash),
            rental_ended_at: b.rental_ended_at,
        })
    }
}

/// A stored order's two lines: the body and the saga's working state.
fn lines(stored: &[u8]) -> Option<(&[u8], &[u8])> {
    let split = memchr::memchr(b'\n', stored)?;
    Some((&stored[..split], &stored[split + 1..]))
}

/// The status in an order's API body, read without decoding the rest of it.
pub fn status_of(body: &[u8]) -> Result<String, serde_json::Error> {
    #[derive(Deserialize)]
    struct Status<'a> {
        #[serde(borrow)]
        status: Cow<'a, str>,
    }
    serde_json::from_slice::<Status>(body).map(|s| s.status.into_owned())
}

/// The API body within a stored order (its first line).
pub fn body_of(stored: &[u8]) -> &[u8] {
    lines(stored).map_or(stored, |(body, _)| body)
}

/// A TRX amount as a JSON number written from its exact decimal text (5.85, never the
/// nearest float's digits), and read back the same way.
mod trx_number {
    use flashrent_events::Sun;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(sun: &Sun, s: S) -> Result<S::Ok, S::Error> {
        let text = RawValue::from_string(sun.trx_text(0)).map_err(serde::ser::Error::custom)?;
        text.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Sun, D::Error> {
        let raw = <&RawValue>::deserialize(d)?;
        Sun::parse_trx(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// A user id as text; manual delegations belong to the operator, written `operator`, an id
/// no client can name (so the request parsers never accept it).
mod user_text {
    use flashrent_events::UserId;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(user: &UserId, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(user)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<UserId, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        if text == UserId::OPERATOR.to_string() {
            return Ok(UserId::OPERATOR);
        }
        UserId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> OrderView {
        let at = "2026-11-25T03:49:41.310938657Z".parse().unwrap();
        OrderView {
            order_id: OrderId::new_v7(),
            user_id: UserId::parse("42").unwrap(),
            kind: OrderKind::Rental,
            status: "processing".into(),
            energy_amount: EnergyAmount::new(65_000).unwrap(),
            duration: RentalDuration::parse("1h").unwrap(),
            receive_address: TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap(),
            price: Sun::parse_trx("5.85").unwrap(),
            paid: true,
            created_at: at,
            estimated_completion: at,
            updated_at: at,
            supplier_wallet: None,
            pending_transaction: Some("ab".repeat(32)),
            pending_signed_tx: Some("0a\"\n\\02".into()),
            pending_expires_at: Some(at),
            broadcast_at: None,
            transaction_hash: None,
            block_number: None,
            completed_at: None,
            rental_ends_at: None,
            failure_reason: Some(FailureReason::DelegationFailed),
            failure_detail: Some("line one\nline \"two\"".into()),
            failed_at: None,
            refunded_at: None,
            reclaim_transaction: None,
            reclaim_signed_tx: None,
            reclaim_expires_at: None,
            reclaim_broadcast: true,
            reclaim_transaction_hash: None,
            rental_ended_at: None,
        }
    }

    #[test]
    fn a_stored_order_decodes_to_the_same_view() {
        for user in [UserId::parse("42").unwrap(), UserId::OPERATOR] {
            let v = OrderView {
                user_id: user,
                ..view()
            };
            assert_eq!(OrderView::decode(&v.encode()).unwrap(), v);
        }
    }

    #[test]
    fn the_first_line_is_the_api_body_alone() {
        let v = view();
        let stored = v.encode();
        let body: serde_json::Value = serde_json::from_slice(body_of(&stored)).unwrap();
        assert_eq!(body_of(&stored), v.body_json().as_slice());
        // Exact decimal text, and nothing of the saga's working state.
        assert!(std::str::from_utf8(body_of(&stored))
            .unwrap()
            .contains("\"cost_trx\":5.85,\"cost_sun\":5850000"));
        assert_eq!(body["user_id"], "42");
        assert_eq!(body["failure_reason"], "delegation_failed");
        assert_eq!(body["failure_message"], "line one\nline \"two\"");
        assert!(body.get("pending_signed_tx").is_none());
        assert!(body.get("reclaim_broadcast").is_none());
    }

    #[test]
    fn the_working_line_holds_only_what_is_set_and_a_line_with_every_field_still_decodes() {
        let v = OrderView {
            pending_signed_tx: None,
            pending_expires_at: None,
            reclaim_broadcast: false,
            ..view()
        };
        assert!(v.encode().ends_with(b"\n{}"));
        // As every field was written before: nulls and a false.
        let mut every = v.body_json();
        every.extend_from_slice(
            br#"
{"pending_signed_tx":null,"pending_expires_at":null,"broadcast_at":null,"reclaim_transaction":null,"reclaim_signed_tx":null,"reclaim_expires_at":null,"reclaim_broadcast":false}"#,
        );
        assert_eq!(OrderView::decode(&every).unwrap(), v);
    }

    #[test]
    fn a_value_without_its_second_line_is_refused() {
        let v = view();
        assert!(OrderView::decode(&v.body_json()).is_err());
    }
}
