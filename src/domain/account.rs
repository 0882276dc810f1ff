//! A user's account: TRX balance, bound receiving wallets, used credit references and
//! order idempotency keys. The balance invariants (never negative, every change exactly
//! once) are enforced here and nowhere else.

use super::order::Order;
use super::DomainError;
use chrono::{DateTime, Utc};
use flashrent_events::{
    EnergyAmount, Event, OrderId, OrderKind, RentalDuration, Sun, TronAddress, UserId,
};
use std::collections::HashMap;

pub const MAX_WALLETS_PER_USER: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserAccount {
    pub user_id: UserId,
    pub balance: Sun,
    pub wallets: Vec<TronAddress>,
    credits: HashMap<String, Sun>,
    /// Idempotency key → (order, fingerprint of the request that used it).
    idempotency: HashMap<String, (OrderId, String)>,
    pub version: u64,
}

pub struct PlaceOrder {
    pub order_id: OrderId,
    pub kind: OrderKind,
    pub energy: EnergyAmount,
    pub duration: RentalDuration,
    pub receive_address: TronAddress,
    pub price: Sun,
    pub pinned_wallet: Option<TronAddress>,
    pub idempotency: Option<(String, String)>,
    pub estimated_completion: DateTime<Utc>,
    /// The client's notification target and reference, if any.
    pub callback: OrderCallback,
}

/// Optional per-order notification settings given at order creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderCallback {
    pub callback_url: Option<flashrent_events::CallbackUrl>,
    pub out_trade_no: Option<String>,
}

/// What placing an order came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    New(OrderId),
    /// The idempotency key was used before by the same request: that order stands.
    Replayed(OrderId),
}

pub enum Command {
    Credit {
        amount: Sun,
        reference: String,
    },
    AddWallet {
        address: TronAddress,
    },
    PlaceOrder(Box<PlaceOrder>),
    /// The seed's explicit deduction: pays an order unless it is paid already.
    Deduct {
        order: Option<Order>,
        order_id: OrderId,
        amount: Sun,
    },
    /// Gives a failed order's payment back.
    Refund {
        order: Order,
    },
}

impl UserAccount {
    pub fn new(user_id: UserId) -> UserAccount {
        UserAccount {
            user_id,
            balance: Sun::ZERO,
            wallets: Vec::new(),
            credits: HashMap::new(),
            idempotency: HashMap::new(),
            version: 0,
        }
    }

    pub fn idempotent_order(&self, key: &str) -> Option<&(OrderId, String)> {
        self.idempotency.get(key)
    }

    pub fn credit_reference(&self, reference: &str) -> Option<Sun> {
        self.credits.get(reference).copied()
    }
}

pub fn decide(account: &UserAccount, command: Command) -> Result<Vec<Event>, DomainError> {
    let user_id = account.user_id;
    match command {
        Command::Credit { amount, reference } => match account.credits.get(&reference) {
            Some(&used) if used == amount => Ok(vec![]),
            Some(&used) => Err(DomainError::CreditReferenceConflict {
                reference,
                amount: used,
            }),
            None => {
                let balance_after = account
                    .balance
                    .checked_add(amount)
                    .ok_or(DomainError::Overflow)?;
                Ok(vec![Event::BalanceCredited {
                    user_id,
                    amount,
                    reference,
                    balance_after,
                }])
            }
        },
        Command::AddWallet { address } => {
            if account.wallets.contains(&address) {
                return Err(DomainError::DuplicateWallet(address));
            }
            if account.wallets.len() >= MAX_WALLETS_PER_USER {
                return Err(DomainError::TooManyWallets(MAX_WALLETS_PER_USER));
            }
            Ok(vec![Event::WalletAdded {
                user_id,
                wallet_id: account.wallets.len() as u32 + 1,
                address,
            }])
        }
        Command::PlaceOrder(p) => {
            if let Some((key, fingerprint)) = &p.idempotency {
                if let Some((_, used_by)) = account.idempotency.get(key) {
                    return if used_by == fingerprint {
                        Ok(vec![])
                    } else {
                        Err(DomainError::IdempotencyKeyReused)
                    };
                }
            }
            let (idempotency_key, request_fingerprint) = p.idempotency.clone().unzip();
            let placed = Event::OrderPlaced {
                order_id: p.order_id,
                user_id,
                kind: p.kind,
                energy: p.energy,
                duration: p.duration,
                receive_address: p.receive_address,
                price: p.price,
                pinned_wallet: p.pinned_wallet,
                idempotency_key,
                request_fingerprint,
                estimated_completion: p.estimated_completion,
                callback_url: p
                    .callback
                    .callback_url
                    .as_ref()
                    .map(|u| u.as_str().to_owned()),
                out_trade_no: p.callback.out_trade_no.clone(),
            };
            if p.kind == OrderKind::Manual {
                return Ok(vec![placed]);
            }
            let balance_after =
                account
                    .balance
                    .checked_sub(p.price)
                    .ok_or(DomainError::InsufficientBalance {
                        required: p.price,
                        current: account.balance,
                    })?;
            let debited = Event::BalanceDebited {
                user_id,
                order_id: p.order_id,
                amount: p.price,
                balance_after,
            };
            Ok(vec![placed, debited])
        }
        Command::Deduct {
            order,
            order_id,
            amount,
        } => {
            let order = order.ok_or(DomainError::OrderNotFound(order_id))?;
            if order.user_id != user_id {
                return Err(DomainError::OrderNotOwned(order_id));
            }
            if order.price != amount {
                return Err(DomainError::AmountMismatch {
                    expected: order.price,
                    given: amount,
                });
            }
            if order.paid || order.kind == OrderKind::Manual {
                return Ok(vec![]);
            }
            let balance_after =
                account
                    .balance
                    .checked_sub(amount)
                    .ok_or(DomainError::InsufficientBalance {
                        required: amount,
                        current: account.balance,
                    })?;
            Ok(vec![Event::BalanceDebited {
                user_id,
                order_id,
                amount,
                balance_after,
            }])
        }
        Command::Refund { order } => {
            if order.refunded || !order.paid {
                return Ok(vec![]);
            }
            let balance_after = account
                .balance
                .checked_add(order.price)
                .ok_or(DomainError::Overflow)?;
            let order_id = order.order_id;
            Ok(vec![
                Event::OrderRefunded {
                    order_id,
                    user_id,
                    amount: order.price,
                },
                Event::BalanceRefunded {
                    user_id,
                    order_id,
                    amount: order.price,
                    balance_after,
                },
            ])
        }
    }
}

/// Applies one of this account's events. Events of other aggregates leave it unchanged.
pub fn evolve(mut account: UserAccount, event: &Event) -> UserAccount {
    match event {
        // The balance follows the amounts; `balance_after` is what the audit checks against.
        Event::BalanceCredited {
            amount, reference, ..
        } => {
            account.credits.insert(reference.clone(), *amount);
            account.balance =
                Sun::from_sun(account.balance.as_sun().saturating_add(amount.as_sun()));
        }
        Event::WalletAdded { address, .. } => account.wallets.push(*address),
        Event::BalanceDebited { amount, .. } => {
            account.balance =
                Sun::from_sun(account.balance.as_sun().saturating_sub(amount.as_sun()));
        }
        Event::BalanceRefunded { amount, .. } => {
            account.balance =
                Sun::from_sun(account.balance.as_sun().saturating_add(amount.as_sun()));
        }
        Event::OrderPlaced {
            order_id,
            idempotency_key: Some(key),
            request_fingerprint,
            ..
        } => {
            account.idempotency.insert(
                key.clone(),
                (*order_id, request_fingerprint.clone().unwrap_or_default()),
            );
            // The order's own aggregate counts this event, not the account.
            return account;
        }
        _ => return account,
    }
    account.version += 1;
    account
}
