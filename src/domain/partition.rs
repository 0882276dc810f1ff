//! Everything one partition's writer decides against: the accounts and orders whose key
//! hashes to it, and the wallet pool if the pool's key does.

use super::{account, keys, order, pool};
use flashrent_events::{Event, OrderId, UserId};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct PartitionState {
    pub accounts: HashMap<UserId, account::UserAccount>,
    pub orders: HashMap<OrderId, order::Order>,
    pub pool: pool::WalletPool,
    pub api_keys: keys::ApiKeys,
}

impl PartitionState {
    pub fn account(&self, user_id: UserId) -> account::UserAccount {
        self.accounts
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| account::UserAccount::new(user_id))
    }

    /// The version of the aggregate an event belongs to: the sequence of its last event (the
    /// number of its events so far, unless retired events were dropped, see
    /// [`PartitionState::count_recorded`]).
    pub fn version_of(&self, event: &Event) -> u64 {
        use flashrent_events::AggregateKind::*;
        match event.aggregate().0 {
            UserAccount => user_of(event)
                .and_then(|u| self.accounts.get(&u))
                .map_or(0, |a| a.version),
            Order => event
                .order_id()
                .and_then(|o| self.orders.get(&o))
                .map_or(0, |o| o.version),
            WalletPool => self.pool.version,
            ApiKeys => self.api_keys.version,
        }
    }

    /// Counts a recorded event at the sequence it was recorded with, once it is evolved: an
    /// aggregate's next event then follows every event recorded of it, the retired ones too,
    /// which decoding drops (`flashrent_events::codec::RETIRED`), so no two of its events
    /// share a sequence.
    pub fn count_recorded(&mut self, event: &Event, sequence: u64) {
        use flashrent_events::AggregateKind::*;
        let version = match event.aggregate().0 {
            UserAccount => user_of(event)
                .and_then(|u| self.accounts.get_mut(&u))
                .map(|a| &mut a.version),
            Order => event
                .order_id()
                .and_then(|o| self.orders.get_mut(&o))
                .map(|o| &mut o.version),
            WalletPool => Some(&mut self.pool.version),
            ApiKeys => Some(&mut self.api_keys.version),
        };
        if let Some(v) = version {
            *v = (*v).max(sequence);
        }
    }

    pub fn evolve(&mut self, event: &Event) {
        if let Some(user_id) = user_of(event) {
            let acc = self
                .accounts
                .remove(&user_id)
                .unwrap_or_else(|| account::UserAccount::new(user_id));
            self.accounts.insert(user_id, account::evolve(acc, event));
        }
        if let Some(order_id) = event.order_id() {
            if let Some(o) = order::start(event) {
                self.orders.insert(order_id, o);
            } else if let Some(o) = self.orders.remove(&order_id) {
                self.orders.insert(order_id, order::evolve(o, event));
            }
        }
        match event.aggregate().0 {
            flashrent_events::AggregateKind::WalletPool => {
                self.pool = pool::evolve(std::mem::take(&mut self.pool), event);
            }
            flashrent_events::AggregateKind::ApiKeys => {
                self.api_keys = keys::evolve(std::mem::take(&mut self.api_keys), event);
            }
            _ => {}
        }
    }
}

/// The account an event touches, if any (order placement touches its user's idempotency keys).
pub fn user_of(event: &Event) -> Option<UserId> {
    match event {
        Event::BalanceCredited { user_id, .. }
        | Event::WalletAdded { user_id, .. }
        | Event::BalanceDebited { user_id, .. }
        | Event::BalanceRefunded { user_id, .. }
        | Event::OrderPlaced { user_id, .. } => Some(*user_id),
        _ => None,
    }
}
