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
    EnergyAmount, FailureReason, OrderId, OrderKind, OrderStatus, RentalDuration, Sun, TronAddress,
    TxId, TxProgress, UserId,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The seed's order shape (§7.1) and what users of rental platforms expect beside it.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    order_id: OrderId,
    #[serde(with = "status_text")]
    status: OrderStatus,
    #[serde(with = "user_text")]
    user_id: UserId,
    energy_amount: EnergyAmount,
    duration: RentalDuration,
    receive_address: TronAddress,
    #[serde(with = "trx_number")]
    cost_trx: Sun,
    cost_sun: u64,
    transaction_hash: Option<TxId>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    estimated_completion: DateTime<Utc>,
    kind: OrderKind,
    paid: bool,
    supplier_wallet: Option<TronAddress>,
    /// The delegation's transaction while it is under way.
    pending_transaction: Option<TxId>,
    block_number: Option<u64>,
    failure_reason: Option<FailureReason>,
    #[serde(borrow)]
    failure_message: Option<Cow<'a, str>>,
    failed_at: Option<DateTime<Utc>>,
    refunded_at: Option<DateTime<Utc>>,
    rental_ends_at: Option<DateTime<Utc>>,
    rental_ended_at: Option<DateTime<Utc>>,
    reclaim_transaction_hash: Option<TxId>,
    updated_at: DateTime<Utc>,
}

/// The saga's working state of the order: each leg's signed transaction before it settles.
/// Only what is set is written (most of it is empty most of the time, and every byte of a
/// stored order is copied again at each change of its sled page).
#[derive(Serialize, Deserialize)]
struct Working<'a> {
    /// Without its id, which the body holds (`pending_transaction`).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    delegation: Option<StoredTx<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    reclaim: Option<StoredTx<'a>>,
}

#[derive(Serialize, Deserialize)]
struct StoredTx<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tx_id: Option<TxId>,
    #[serde(borrow)]
    signed_tx: Cow<'a, str>,
    expires_at: DateTime<Utc>,
}

impl<'a> StoredTx<'a> {
    fn of(tx: &'a TxProgress, with_id: bool) -> StoredTx<'a> {
        StoredTx {
            tx_id: with_id.then_some(tx.tx_id),
            signed_tx: Cow::Borrowed(&tx.signed_tx),
            expires_at: tx.expires_at,
        }
    }

    fn into_progress(self, tx_id: TxId) -> TxProgress {
        TxProgress {
            tx_id,
            signed_tx: self.signed_tx.into_owned(),
            expires_at: self.expires_at,
        }
    }
}

fn corrupt(why: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(why)
}

impl OrderView {
    fn body(&self) -> Body<'_> {
        Body {
            order_id: self.order_id,
            status: self.status,
            user_id: self.user_id,
            energy_amount: self.energy_amount,
            duration: self.duration,
            receive_address: self.receive_address,
            cost_trx: self.price,
            cost_sun: self.price.as_sun(),
            transaction_hash: self.transaction_hash,
            created_at: self.created_at,
            completed_at: self.completed_at,
            estimated_completion: self.estimated_completion,
            kind: self.kind,
            paid: self.paid,
            supplier_wallet: self.supplier_wallet,
            pending_transaction: self.delegation.as_ref().map(|t| t.tx_id),
            block_number: self.block_number,
            failure_reason: self.failure_reason,
            failure_message: self.failure_detail.as_deref().map(Cow::Borrowed),
            failed_at: self.failed_at,
            refunded_at: self.refunded_at,
            rental_ends_at: self.rental_ends_at,
            rental_ended_at: self.rental_ended_at,
            reclaim_transaction_hash: self.reclaim_transaction_hash,
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
            delegation: self.delegation.as_ref().map(|t| StoredTx::of(t, false)),
            reclaim: self.reclaim.as_ref().map(|t| StoredTx::of(t, true)),
        };
        serde_json::to_writer(&mut out, &working).expect("an order's working state serializes");
        out
    }

    pub fn decode(stored: &[u8]) -> Result<OrderView, serde_json::Error> {
        let (body, working) =
            lines(stored).ok_or_else(|| corrupt("a stored order has two lines"))?;
        let b: Body = serde_json::from_slice(body)?;
        let w: Working = serde_json::from_slice(working)?;
        if b.cost_sun != b.cost_trx.as_sun() {
            return Err(corrupt("cost_trx and cost_sun differ"));
        }
        let delegation = match (b.pending_transaction, w.delegation) {
            (Some(id), Some(tx)) => Some(tx.into_progress(id)),
            (None, None) => None,
            _ => return Err(corrupt("a pending transaction without its signed bytes")),
        };
        let reclaim = match w.reclaim {
            Some(tx) => {
                let id = tx
                    .tx_id
                    .ok_or_else(|| corrupt("a reclaim without its id"))?;
                Some(tx.into_progress(id))
            }
            None => None,
        };
        Ok(OrderView {
            order_id: b.order_id,
            user_id: b.user_id,
            kind: b.kind,
            status: b.status,
            energy_amount: b.energy_amount,
            duration: b.duration,
            receive_address: b.receive_address,
            price: b.cost_trx,
            paid: b.paid,
            created_at: b.created_at,
            estimated_completion: b.estimated_completion,
            updated_at: b.updated_at,
            supplier_wallet: b.supplier_wallet,
            delegation,
            transaction_hash: b.transaction_hash,
            block_number: b.block_number,
            completed_at: b.completed_at,
            rental_ends_at: b.rental_ends_at,
            failure_reason: b.failure_reason,
            failure_detail: b.failure_message.map(Cow::into_owned),
            failed_at: b.failed_at,
            refunded_at: b.refunded_at,
            reclaim,
            reclaim_transaction_hash: b.reclaim_transaction_hash,
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
pub fn status_of(body: &[u8]) -> Result<OrderStatus, serde_json::Error> {
    #[derive(Deserialize)]
    struct Status {
        #[serde(with = "status_text")]
        status: OrderStatus,
    }
    serde_json::from_slice::<Status>(body).map(|s| s.status)
}

/// The API body within a stored order (its first line).
pub fn body_of(stored: &[u8]) -> &[u8] {
    lines(stored).map_or(stored, |(body, _)| body)
}

/// A status as the API writes it (`pending`, …, [`OrderStatus::as_str`]).
mod status_text {
    use flashrent_events::OrderStatus;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::borrow::Cow;

    pub fn serialize<S: Serializer>(status: &OrderStatus, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(status.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OrderStatus, D::Error> {
        let text = <Cow<'de, str>>::deserialize(d)?;
        OrderStatus::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("no order status {text:?}")))
    }
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

    fn tx(digit: char, expires_at: DateTime<Utc>) -> TxProgress {
        TxProgress {
            tx_id: TxId::parse(&digit.to_string().repeat(64)).unwrap(),
            signed_tx: "0a\"\n\\02".into(),
            expires_at,
        }
    }

    fn view() -> OrderView {
        let at = "2026-11-25T03:49:41.310938657Z".parse().unwrap();
        OrderView {
            order_id: OrderId::parse("0190a1b2-0000-7000-8000-000000000001").unwrap(),
            user_id: UserId::parse("42").unwrap(),
            kind: OrderKind::Rental,
            status: OrderStatus::Processing,
            energy_amount: EnergyAmount::new(65_000).unwrap(),
            duration: RentalDuration::parse("1h").unwrap(),
            receive_address: TronAddress::parse("TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").unwrap(),
            price: Sun::parse_trx("5.85").unwrap(),
            paid: true,
            created_at: at,
            estimated_completion: at,
            updated_at: at,
            supplier_wallet: None,
            delegation: Some(tx('a', at)),
            transaction_hash: None,
            block_number: None,
            completed_at: None,
            rental_ends_at: None,
            failure_reason: Some(FailureReason::DelegationFailed),
            failure_detail: Some("line one\nline \"two\"".into()),
            failed_at: None,
            refunded_at: None,
            reclaim: Some(tx('c', at)),
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
        for status in OrderStatus::ALL {
            let v = OrderView {
                status,
                delegation: None,
                reclaim: None,
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
        assert_eq!(body["status"], "processing");
        assert_eq!(body["pending_transaction"], "a".repeat(64));
        assert_eq!(body["failure_reason"], "delegation_failed");
        assert_eq!(body["failure_message"], "line one\nline \"two\"");
        for hidden in ["signed_tx", "delegation", "reclaim", "pending_signed_tx"] {
            assert!(body.get(hidden).is_none(), "{hidden}");
        }
        assert!(!String::from_utf8_lossy(body_of(&stored)).contains(&"c".repeat(64)));
    }

    #[test]
    fn the_api_body_keeps_its_fields_their_order_and_their_values() {
        let v = OrderView {
            status: OrderStatus::Completed,
            delegation: None,
            reclaim: None,
            transaction_hash: Some(TxId::parse(&"b".repeat(64)).unwrap()),
            block_number: Some(7),
            failure_reason: None,
            failure_detail: None,
            ..view()
        };
        let at = "2026-11-25T03:49:41.310938657Z";
        let expected = format!(
            concat!(
                r#"{{"order_id":"0190a1b2-0000-7000-8000-000000000001","status":"completed","#,
                r#""user_id":"42","energy_amount":65000,"duration":"1h","#,
                r#""receive_address":"TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2","cost_trx":5.85,"#,
                r#""cost_sun":5850000,"transaction_hash":"{b}","created_at":"{at}","#,
                r#""completed_at":null,"estimated_completion":"{at}","kind":"rental","#,
                r#""paid":true,"supplier_wallet":null,"pending_transaction":null,"#,
                r#""block_number":7,"failure_reason":null,"failure_message":null,"#,
                r#""failed_at":null,"refunded_at":null,"rental_ends_at":null,"#,
                r#""rental_ended_at":null,"reclaim_transaction_hash":null,"updated_at":"{at}"}}"#
            ),
            b = "b".repeat(64),
            at = at,
        );
        assert_eq!(String::from_utf8(v.body_json()).unwrap(), expected);
    }

    #[test]
    fn the_working_line_holds_only_what_is_set() {
        let v = OrderView {
            delegation: None,
            reclaim: None,
            ..view()
        };
        assert!(v.encode().ends_with(b"\n{}"));
        let v = OrderView {
            reclaim: None,
            ..view()
        };
        let stored = v.encode();
        let working: serde_json::Value =
            serde_json::from_slice(&stored[memchr::memchr(b'\n', &stored).unwrap() + 1..]).unwrap();
        // The delegation's id is the body's `pending_transaction`, written once.
        assert!(working["delegation"].get("tx_id").is_none());
        assert_eq!(working["delegation"]["signed_tx"], "0a\"\n\\02");
    }

    #[test]
    fn a_value_without_its_second_line_or_with_half_a_transaction_is_refused() {
        let v = view();
        assert!(OrderView::decode(&v.body_json()).is_err());
        let mut half = v.body_json();
        half.extend_from_slice(b"\n{}");
        assert!(OrderView::decode(&half).is_err(), "no signed bytes");
        let mut reclaim_without_id = OrderView {
            delegation: None,
            ..view()
        }
        .body_json();
        reclaim_without_id.extend_from_slice(
            br#"
{"reclaim":{"signed_tx":"0a","expires_at":"2026-11-25T03:49:41Z"}}"#,
        );
        assert!(OrderView::decode(&reclaim_without_id).is_err());
    }

    #[test]
    fn the_status_is_read_from_a_body_alone() {
        for status in OrderStatus::ALL {
            let v = OrderView { status, ..view() };
            assert_eq!(status_of(&v.body_json()).unwrap(), status);
        }
        assert!(status_of(br#"{"status":"Pending"}"#).is_err());
    }
}
