//! What the saga does next for an order, decided from the order's read model alone.

use crate::chain::SignedTransaction;
use chrono::{DateTime, Utc};
use flashrent_events::OrderKind;
use flashrent_projections::OrderView;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Hold energy in the pool for the order, then check the receiver.
    Reserve,
    SignDelegation,
    BroadcastDelegation(SignedTransaction),
    AwaitDelegation(SignedTransaction),
    /// Release the pool's hold; give the payment back if there was one.
    Settle {
        refund: bool,
    },
    AwaitRentalEnd(DateTime<Utc>),
    SignReclaim,
    BroadcastReclaim(SignedTransaction),
    AwaitReclaim(SignedTransaction),
    Done,
}

pub fn next_step(o: &OrderView, now: DateTime<Utc>) -> Step {
    let signed =
        |id: &Option<String>, tx: &Option<String>, exp: &Option<DateTime<Utc>>| match (id, tx, exp)
        {
            (Some(tx_id), Some(signed_tx), Some(expires_at)) => Some(SignedTransaction {
                tx_id: tx_id.clone(),
                signed_tx: signed_tx.clone(),
                expires_at: *expires_at,
            }),
            _ => None,
        };
    match o.status.as_str() {
        "pending" if o.paid || o.kind == OrderKind::Manual => Step::Reserve,
        "processing" => match signed(
            &o.pending_transaction,
            &o.pending_signed_tx,
            &o.pending_expires_at,
        ) {
            None => Step::SignDelegation,
            Some(tx) if o.broadcast_at.is_none() => Step::BroadcastDelegation(tx),
            Some(tx) => Step::AwaitDelegation(tx),
        },
        "failed" => Step::Settle { refund: o.paid },
        "completed" if o.rental_ended_at.is_none() => {
            let ends = o.rental_ends_at.unwrap_or(now);
            if now < ends {
                return Step::AwaitRentalEnd(ends);
            }
            match signed(
                &o.reclaim_transaction,
                &o.reclaim_signed_tx,
                &o.reclaim_expires_at,
            ) {
                None => Step::SignReclaim,
                Some(tx) if !o.reclaim_broadcast => Step::BroadcastReclaim(tx),
                Some(tx) => Step::AwaitReclaim(tx),
            }
        }
        _ => Step::Done,
    }
}
