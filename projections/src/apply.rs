//! How each event changes the read models. Deterministic: it reads only the event, its
//! envelope and the read models themselves, so a rebuild gives the same bytes.

use crate::keys;
use crate::store::{decoded, ReadModels, StoreError};
use crate::views::*;
use flashrent_events::{Envelope, Event, OrderId, OrderStatus, Sun};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The changes of one projector step, readable before they are written.
pub struct Staged<'a> {
    models: &'a ReadModels,
    pub(crate) writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The orders this step changed, by key, kept decoded and encoded once when the step
    /// is written: an order's events mostly come together (placed and paid, processing and
    /// signed), and decoding and encoding its JSON was a tenth of the server's CPU.
    orders: HashMap<Vec<u8>, OrderView>,
}

impl<'a> Staged<'a> {
    pub fn new(models: &'a ReadModels) -> Staged<'a> {
        Staged {
            models,
            writes: BTreeMap::new(),
            orders: HashMap::new(),
        }
    }

    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.writes.get(key) {
            Some(v) => Ok(v.clone()),
            None => Ok(self.models.get_raw(key)?.map(|v| v.to_vec())),
        }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        decoded(key, self.raw(key)?, |v| serde_json::from_slice(v))
    }

    /// The order at `key`, taken out of the step's decoded orders (put it back with
    /// [`Staged::put_order`]).
    fn take_order(&mut self, key: &[u8]) -> Result<Option<OrderView>, StoreError> {
        match self.orders.remove(key) {
            Some(view) => Ok(Some(view)),
            None => decoded(key, self.raw(key)?, OrderView::decode),
        }
    }

    fn put_order(&mut self, key: Vec<u8>, view: OrderView) {
        self.orders.insert(key, view);
    }

    fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.writes.insert(
            key,
            Some(serde_json::to_vec(value).expect("views serialize")),
        );
    }

    pub(crate) fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.writes.insert(key, None);
    }

    /// Adds the order to the active set, or takes it out.
    pub(crate) fn set_active(&mut self, id: &OrderId, active: bool) -> Result<(), StoreError> {
        let key = keys::active_chunk(id);
        let mut ids = self.raw(&key)?.unwrap_or_default();
        let me = id.as_uuid().as_bytes();
        let changed = if active {
            crate::active::insert(&mut ids, me)
        } else {
            crate::active::remove(&mut ids, me)
        };
        if !changed {
            return Ok(());
        }
        if ids.is_empty() {
            self.delete(key);
        } else {
            self.put_raw(key, ids);
        }
        Ok(())
    }

    fn bump_count(&mut self, status: OrderStatus, by: i64) -> Result<(), StoreError> {
        let key = keys::status_count(status);
        let n = crate::store::stored_u64(self.raw(&key)?);
        self.put_raw(key, n.saturating_add_signed(by).to_be_bytes().to_vec());
        Ok(())
    }

    /// Changes the event's order with `f`, and answers what `f` does (`None`: no such order).
    fn update_order<R>(
        &mut self,
        env: &Envelope,
        f: impl FnOnce(&mut OrderView) -> R,
    ) -> Result<Option<R>, StoreError> {
        let Some(id) = env.event.order_id() else {
            return Ok(None);
        };
        let key = keys::order(&id);
        let Some(mut view) = self.take_order(&key)? else {
            return Ok(None);
        };
        let before = view.status;
        let answer = f(&mut view);
        view.updated_at = env.occurred_at;
        if view.status != before {
            self.bump_count(before, -1)?;
            self.bump_count(view.status, 1)?;
            // A completed order's remaining work (the rental's end) is found by the
            // rental-end index, so it leaves the active set once completed.
            if matches!(view.status, OrderStatus::Refunded | OrderStatus::Completed) {
                self.set_active(&id, false)?;
            }
        }
        self.put_order(key, view);
        Ok(Some(answer))
    }

    fn ledger(
        &mut self,
        env: &Envelope,
        user: flashrent_events::UserId,
        delta: i64,
        after: Sun,
        cause: &str,
        reference: Option<String>,
    ) -> Result<(), StoreError> {
        let key = keys::balance(user);
        let mut bal = self.get::<BalanceView>(&key)?.unwrap_or(BalanceView {
            user_id: user,
            balance: Sun::ZERO,
            last_updated: env.occurred_at,
            ledger_entries: 0,
        });
        bal.balance = after;
        bal.last_updated = env.occurred_at;
        bal.ledger_entries += 1;
        let entry = LedgerEntry {
            seq: bal.ledger_entries,
            at: env.occurred_at,
            delta,
            balance_after: after,
            cause: cause.to_owned(),
            order_id: env.event.order_id(),
            reference,
            event_id: env.event_id,
        };
        self.put(keys::ledger(user, entry.seq), &entry);
        self.put(key, &bal);
        Ok(())
    }

    pub fn apply(&mut self, env: &Envelope) -> Result<(), StoreError> {
        let at = env.occurred_at;
        match &env.event {
            Event::BalanceCredited {
                user_id,
                amount,
                reference,
                balance_after,
            } => {
                self.ledger(
                    env,
                    *user_id,
                    amount.as_sun() as i64,
                    *balance_after,
                    "credit",
                    Some(reference.clone()),
                )?;
            }
            Event::BalanceDebited {
                user_id,
                amount,
                balance_after,
                ..
            } => {
                self.ledger(
                    env,
                    *user_id,
                    -(amount.as_sun() as i64),
                    *balance_after,
                    "order_payment",
                    None,
                )?;
                self.update_order(env, |o| o.paid = true)?;
            }
            Event::BalanceRefunded {
                user_id,
                amount,
                balance_after,
                ..
            } => {
                self.ledger(
                    env,
                    *user_id,
                    amount.as_sun() as i64,
                    *balance_after,
                    "refund",
                    None,
                )?;
            }
            Event::WalletAdded {
                user_id,
                wallet_id,
                address,
            } => {
                let key = keys::wallets(*user_id);
                let mut list: Vec<WalletView> = self.get(&key)?.unwrap_or_default();
                list.push(WalletView {
                    id: *wallet_id,
                    wallet_address: *address,
                    created_at: at,
                });
                self.put(key, &list);
            }
            Event::OrderPlaced {
                order_id,
                user_id,
                kind,
                energy,
                duration,
                receive_address,
                price,
                estimated_completion,
                pinned_wallet,
                ..
            } => {
                let view = OrderView {
                    order_id: *order_id,
                    user_id: *user_id,
                    kind: *kind,
                    status: OrderStatus::Pending,
                    energy_amount: *energy,
                    duration: *duration,
                    receive_address: *receive_address,
                    price: *price,
                    paid: false,
                    created_at: at,
                    estimated_completion: *estimated_completion,
                    updated_at: at,
                    supplier_wallet: *pinned_wallet,
                    delegation: None,
                    transaction_hash: None,
                    block_number: None,
                    completed_at: None,
                    rental_ends_at: None,
                    failure_reason: None,
                    failure_detail: None,
                    failed_at: None,
                    refunded_at: None,
                    reclaim: None,
                    reclaim_transaction_hash: None,
                    rental_ended_at: None,
                };
                self.put_order(keys::order(order_id), view);
                // Only the order's place among the user's: a status filter reads the order
                // itself, so a status change rewrites one key, not two.
                self.put_raw(keys::user_order(*user_id, order_id), vec![]);
                self.set_active(order_id, true)?;
                self.bump_count(OrderStatus::Pending, 1)?;
            }
            Event::OrderProcessing {
                supplier_wallet, ..
            } => {
                self.update_order(env, |o| {
                    o.status = OrderStatus::Processing;
                    o.supplier_wallet = Some(*supplier_wallet);
                })?;
            }
            Event::OrderCompleted {
                transaction_hash,
                block_number,
                completed_at,
                rental_ends_at,
                ..
            } => {
                let found = self.update_order(env, |o| {
                    o.status = OrderStatus::Completed;
                    o.delegation = None;
                    o.transaction_hash = Some(*transaction_hash);
                    o.block_number = Some(*block_number);
                    o.completed_at = Some(*completed_at);
                    o.rental_ends_at = Some(*rental_ends_at);
                    o.order_id
                })?;
                if let Some(id) = found {
                    self.put_raw(keys::rental_end(*rental_ends_at, &id), vec![]);
                }
            }
            Event::OrderFailed { reason, .. } => {
                let unpaid = self.update_order(env, |o| {
                    o.status = OrderStatus::Failed;
                    o.failure_reason = Some(*reason);
                    // Shown to the client: our words for the reason, never the event's detail
                    // (it may hold a node's text).
                    o.failure_detail = Some(reason.message().to_owned());
                    o.failed_at = Some(at);
                    o.delegation = None;
                    (!o.paid).then_some(o.order_id)
                })?;
                // Nothing to give back for an unpaid (manual) order: its story ends here.
                if let Some(id) = unpaid.flatten() {
                    self.set_active(&id, false)?;
                }
            }
            Event::OrderRefunded { .. } => {
                self.update_order(env, |o| {
                    o.status = OrderStatus::Refunded;
                    o.refunded_at = Some(at);
                })?;
            }
            Event::RentalEnded {
                reclaim_transaction_hash,
                ended_at,
                ..
            } => {
                let ended = self.update_order(env, |o| {
                    o.reclaim = None;
                    o.reclaim_transaction_hash = Some(*reclaim_transaction_hash);
                    o.rental_ended_at = Some(*ended_at);
                    o.rental_ends_at.map(|ends| (ends, o.order_id))
                })?;
                if let Some((ends, id)) = ended.flatten() {
                    self.delete(keys::rental_end(ends, &id));
                }
            }
            Event::SupplierWalletRegistered {
                address,
                energy_capacity,
            } => {
                let view = PoolWalletView {
                    address: *address,
                    energy_capacity: energy_capacity.get(),
                    reserved: 0,
                    delegated: 0,
                    registered_at: at,
                    updated_at: at,
                };
                self.put(keys::pool_wallet(address), &view);
            }
            Event::SupplierCapacityObserved {
                address,
                energy_capacity,
            } => self.pool(address, at, |w| w.energy_capacity = *energy_capacity)?,
            Event::EnergyReserved { wallet, energy, .. } => {
                self.pool(wallet, at, |w| w.reserved += energy.get())?
            }
            Event::EnergyReservationRejected { .. } => {}
            // Both legs of an order, delegation and reclaim, take their transactions alike.
            Event::DelegationSigned { .. }
            | Event::DelegationExpired { .. }
            | Event::ReclaimSigned { .. }
            | Event::ReclaimExpired { .. } => {
                if let Some((leg, change)) = env.event.leg_change() {
                    self.update_order(env, |o| *o.leg_mut(leg) = change.signed())?;
                }
            }
            Event::ReservedEnergyDelegated { wallet, energy, .. } => {
                self.pool(wallet, at, |w| {
                    w.reserved = w.reserved.saturating_sub(energy.get());
                    w.delegated += energy.get();
                })?
            }
            Event::ReservationReleased { wallet, energy, .. } => self.pool(wallet, at, |w| {
                w.reserved = w.reserved.saturating_sub(energy.get())
            })?,
            Event::DelegatedEnergyReturned { wallet, energy, .. } => {
                self.pool(wallet, at, |w| {
                    w.delegated = w.delegated.saturating_sub(energy.get())
                })?
            }
            Event::ApiKeyCreated {
                key_id,
                scope,
                name,
                key_hash,
            } => {
                let view = ApiKeyView {
                    id: *key_id,
                    scope: *scope,
                    name: name.clone(),
                    created_at: at,
                    last_used_at: None,
                    revoked_at: None,
                };
                self.put(keys::api_key(key_id), &view);
                self.put(keys::api_key_hash(key_hash), key_id);
            }
            Event::ApiKeyRevoked { key_id } => {
                let key = keys::api_key(key_id);
                if let Some(mut view) = self.get::<ApiKeyView>(&key)? {
                    view.revoked_at.get_or_insert(at);
                    self.put(key, &view);
                }
            }
            Event::ApiKeysUsed { uses } => {
                for used in uses {
                    let key = keys::api_key(&used.key_id);
                    if let Some(mut view) = self.get::<ApiKeyView>(&key)? {
                        if view.last_used_at.is_none_or(|last| last < used.at) {
                            view.last_used_at = Some(used.at);
                            self.put(key, &view);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn pool(
        &mut self,
        wallet: &flashrent_events::TronAddress,
        at: chrono::DateTime<chrono::Utc>,
        f: impl FnOnce(&mut PoolWalletView),
    ) -> Result<(), StoreError> {
        let key = keys::pool_wallet(wallet);
        if let Some(mut w) = self.get::<PoolWalletView>(&key)? {
            f(&mut w);
            w.updated_at = at;
            self.put(key, &w);
        }
        Ok(())
    }

    /// The step's changes, each key's last value (`None` removes it).
    pub fn into_writes(self) -> impl Iterator<Item = (sled::IVec, Option<sled::IVec>)> {
        let Staged {
            mut writes, orders, ..
        } = self;
        for (key, view) in orders {
            writes.insert(key, Some(view.encode()));
        }
        writes
            .into_iter()
            .map(|(k, v)| (sled::IVec::from(k), v.map(sled::IVec::from)))
    }
}
