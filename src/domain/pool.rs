//! The wallet pool: supplier wallets with their energy capacity, and which order holds
//! which energy. One aggregate, so no two orders can ever reserve the same energy.

use super::{Decision, DomainError, Reply};
use flashrent_events::{EnergyAmount, Event, OrderId, TronAddress};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SupplierWallet {
    pub capacity: u64,
    pub reserved: u64,
    pub delegated: u64,
}

impl SupplierWallet {
    pub fn available(&self) -> u64 {
        self.capacity.saturating_sub(self.reserved + self.delegated)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Holding {
    Reserved,
    Delegated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    pub wallet: TronAddress,
    pub energy: EnergyAmount,
    pub holding: Holding,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalletPool {
    pub wallets: BTreeMap<TronAddress, SupplierWallet>,
    /// Energy held for orders, until it is released or returned.
    pub reservations: HashMap<OrderId, Reservation>,
    /// Orders the pool turned away (a repeated request gets the same answer).
    pub rejected: HashSet<OrderId>,
    pub version: u64,
}

/// Where the pool put an order's energy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReserveOutcome {
    Reserved { wallet: TronAddress },
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    Register {
        address: TronAddress,
        energy_capacity: EnergyAmount,
    },
    Reserve {
        order_id: OrderId,
        energy: EnergyAmount,
        pinned_wallet: Option<TronAddress>,
    },
    MarkDelegated {
        order_id: OrderId,
    },
    Release {
        order_id: OrderId,
    },
    Return {
        order_id: OrderId,
    },
    /// What the chain says a registered wallet can still delegate (energy).
    ObserveChainInventory {
        address: TronAddress,
        delegatable: u64,
    },
}

impl Command {
    /// The order whose energy the command moves, if any.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Command::Reserve { order_id, .. }
            | Command::MarkDelegated { order_id }
            | Command::Release { order_id }
            | Command::Return { order_id } => Some(*order_id),
            Command::Register { .. } | Command::ObserveChainInventory { .. } => None,
        }
    }
}

impl WalletPool {
    /// The wallet that best fits `energy`: the one with the least available energy that
    /// still covers it (best fit). Small orders fill nearly-used wallets and large wallets
    /// stay whole for large orders, so fewer orders are turned away for fragmentation.
    pub fn best_fit(&self, energy: EnergyAmount) -> Option<(TronAddress, u64)> {
        best_fit(
            self.wallets.iter().map(|(a, w)| (*a, w.available())),
            energy,
        )
    }

    pub fn largest_available(&self) -> u64 {
        self.wallets
            .values()
            .map(SupplierWallet::available)
            .max()
            .unwrap_or(0)
    }

    pub fn total_available(&self) -> u64 {
        self.wallets.values().map(SupplierWallet::available).sum()
    }
}

/// Best fit over `(wallet, available energy)` pairs; ties go to the lower address so the
/// choice is deterministic.
pub fn best_fit(
    wallets: impl Iterator<Item = (TronAddress, u64)>,
    energy: EnergyAmount,
) -> Option<(TronAddress, u64)> {
    wallets
        .filter(|(_, avail)| *avail >= energy.get())
        .min_by_key(|(a, avail)| (*avail, *a))
}

pub fn decide(pool: &WalletPool, command: &Command) -> Result<Decision, DomainError> {
    let events = |events| {
        Ok(Decision {
            events,
            reply: Reply::Done,
        })
    };
    match *command {
        Command::Register {
            address,
            energy_capacity,
        } => {
            if pool.wallets.contains_key(&address) {
                return Err(DomainError::SupplierWalletExists(address));
            }
            events(vec![Event::SupplierWalletRegistered {
                address,
                energy_capacity,
            }])
        }
        Command::ObserveChainInventory {
            address,
            delegatable,
        } => {
            // Energy reserved for an order whose delegation already landed is missing from
            // the chain's number and still counted as reserved here: a cautious capacity,
            // never an optimistic one.
            let Some(w) = pool.wallets.get(&address) else {
                return events(vec![]);
            };
            let energy_capacity = delegatable.saturating_add(w.delegated);
            if energy_capacity == w.capacity {
                return events(vec![]);
            }
            events(vec![Event::SupplierCapacityObserved {
                address,
                energy_capacity,
            }])
        }
        Command::Reserve {
            order_id,
            energy,
            pinned_wallet,
        } => {
            // A repeated request gets the first answer.
            if let Some(r) = pool.reservations.get(&order_id) {
                return Ok(Decision::reply(Reply::Reserve(ReserveOutcome::Reserved {
                    wallet: r.wallet,
                })));
            }
            if pool.rejected.contains(&order_id) {
                return Ok(Decision::reply(Reply::Reserve(ReserveOutcome::Rejected)));
            }
            // A pinned wallet (an operator's manual delegation) is checked by the HTTP layer
            // first; if it ran short since, the reservation is turned away like any other.
            let chosen = match pinned_wallet {
                Some(address) => pool
                    .wallets
                    .get(&address)
                    .filter(|w| w.available() >= energy.get())
                    .map(|_| address),
                None => pool.best_fit(energy).map(|(a, _)| a),
            };
            Ok(match chosen {
                Some(wallet) => Decision {
                    events: vec![Event::EnergyReserved {
                        order_id,
                        wallet,
                        energy,
                    }],
                    reply: Reply::Reserve(ReserveOutcome::Reserved { wallet }),
                },
                None => Decision {
                    events: vec![Event::EnergyReservationRejected { order_id, energy }],
                    reply: Reply::Reserve(ReserveOutcome::Rejected),
                },
            })
        }
        Command::MarkDelegated { order_id } => events(settle(
            pool,
            order_id,
            Holding::Reserved,
            |order_id, wallet, energy| Event::ReservedEnergyDelegated {
                order_id,
                wallet,
                energy,
            },
        )),
        Command::Release { order_id } => events(settle(
            pool,
            order_id,
            Holding::Reserved,
            |order_id, wallet, energy| Event::ReservationReleased {
                order_id,
                wallet,
                energy,
            },
        )),
        Command::Return { order_id } => events(settle(
            pool,
            order_id,
            Holding::Delegated,
            |order_id, wallet, energy| Event::DelegatedEnergyReturned {
                order_id,
                wallet,
                energy,
            },
        )),
    }
}

/// Moves an order's energy on from `holding`; nothing when it is not (or no longer) there,
/// so a repeated command decides nothing.
fn settle(
    pool: &WalletPool,
    order_id: OrderId,
    holding: Holding,
    event: impl FnOnce(OrderId, TronAddress, EnergyAmount) -> Event,
) -> Vec<Event> {
    match pool.reservations.get(&order_id) {
        Some(r) if r.holding == holding => vec![event(order_id, r.wallet, r.energy)],
        _ => vec![],
    }
}

pub fn evolve(mut pool: WalletPool, event: &Event) -> WalletPool {
    match event {
        Event::SupplierWalletRegistered {
            address,
            energy_capacity,
        } => {
            pool.wallets.insert(
                *address,
                SupplierWallet {
                    capacity: energy_capacity.get(),
                    ..Default::default()
                },
            );
        }
        Event::SupplierCapacityObserved {
            address,
            energy_capacity,
        } => {
            if let Some(w) = pool.wallets.get_mut(address) {
                w.capacity = *energy_capacity;
            }
        }
        Event::EnergyReserved {
            order_id,
            wallet,
            energy,
        } => {
            if let Some(w) = pool.wallets.get_mut(wallet) {
                w.reserved += energy.get();
            }
            pool.reservations.insert(
                *order_id,
                Reservation {
                    wallet: *wallet,
                    energy: *energy,
                    holding: Holding::Reserved,
                },
            );
        }
        Event::EnergyReservationRejected { order_id, .. } => {
            pool.rejected.insert(*order_id);
        }
        Event::ReservedEnergyDelegated {
            order_id,
            wallet,
            energy,
        } => {
            if let Some(w) = pool.wallets.get_mut(wallet) {
                w.reserved = w.reserved.saturating_sub(energy.get());
                w.delegated += energy.get();
            }
            if let Some(r) = pool.reservations.get_mut(order_id) {
                r.holding = Holding::Delegated;
            }
        }
        Event::ReservationReleased {
            order_id,
            wallet,
            energy,
        } => {
            if let Some(w) = pool.wallets.get_mut(wallet) {
                w.reserved = w.reserved.saturating_sub(energy.get());
            }
            pool.reservations.remove(order_id);
        }
        Event::DelegatedEnergyReturned {
            order_id,
            wallet,
            energy,
        } => {
            if let Some(w) = pool.wallets.get_mut(wallet) {
                w.delegated = w.delegated.saturating_sub(energy.get());
            }
            pool.reservations.remove(order_id);
        }
        _ => return pool,
    }
    pool.version += 1;
    pool
}
