//! A user's account: TRX balance, bound receiving wallets, used credit references and
//! order idempotency keys. The balance invariants (never negative, every change exactly
//! once) are enforced here and nowhere else.

use super::order::{Order, OrderStatus};
use super::{Decision, DomainError, Reply};
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

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub kind: OrderKind,
    pub energy: EnergyAmount,
    pub duration: RentalDuration,
    pub receive_address: TronAddress,
    pub price: Sun,
    pub pinned_wallet: Option<TronAddress>,
    /// The request's idempotency key, and a fingerprint of what it asked for.
    pub idempotency: Option<(String, String)>,
    pub estimated_completion: DateTime<Utc>,
    /// The client's notification target and reference, if any.
    pub callback: OrderCallback,
}

/// Optional per-order notification settings given at order creation.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderCallback {
    pub callback_url: Option<flashrent_events::CallbackUrl>,
    pub out_trade_no: Option<String>,
}

/// What placing an order came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Placed {
    New(OrderId),
    /// The idempotency key was used before by the same request: that order stands.
    Replayed(OrderId),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Credits the balance once per reference (answers the balance after).
    Credit { amount: Sun, reference: String },
    /// Binds a receiving wallet (answers its id).
    AddWallet { address: TronAddress },
    /// Places an order and pays for it in the same decision.
    PlaceOrder(Box<PlaceOrder>),
    /// The seed's explicit deduction: pays the user's order unless it is paid already
    /// (answers whether this paid it).
    Deduct { order_id: OrderId, amount: Sun },
    /// Gives a failed order's payment back, once.
    Refund { order_id: OrderId },
}

impl Command {
    /// The order the command reads besides the account.
    pub fn order_id(&self) -> Option<OrderId> {
        match self {
            Command::Deduct { order_id, .. } | Command::Refund { order_id } => Some(*order_id),
            Command::PlaceOrder(p) => Some(p.order_id),
            Command::Credit { .. } | Command::AddWallet { .. } => None,
        }
    }
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
}

/// Decides `command` on `account`; `order` is the order the command names
/// ([`Command::order_id`]) if the partition has it.
pub fn decide(
    account: &UserAccount,
    order: Option<&Order>,
    command: &Command,
) -> Result<Decision, DomainError> {
    let user_id = account.user_id;
    match command {
        Command::Credit { amount, reference } => match account.credits.get(reference) {
            Some(used) if used == amount => Ok(Decision::reply(Reply::Balance(account.balance))),
            Some(&used) => Err(DomainError::CreditReferenceConflict {
                reference: reference.clone(),
                amount: used,
            }),
            None => {
                let balance_after = account
                    .balance
                    .checked_add(*amount)
                    .ok_or(DomainError::Overflow)?;
                Ok(Decision {
                    events: vec![Event::BalanceCredited {
                        user_id,
                        amount: *amount,
                        reference: reference.clone(),
                        balance_after,
                    }],
                    reply: Reply::Balance(balance_after),
                })
            }
        },
        Command::AddWallet { address } => {
            if account.wallets.contains(address) {
                return Err(DomainError::DuplicateWallet(*address));
            }
            if account.wallets.len() >= MAX_WALLETS_PER_USER {
                return Err(DomainError::TooManyWallets(MAX_WALLETS_PER_USER));
            }
            let wallet_id = account.wallets.len() as u32 + 1;
            Ok(Decision {
                events: vec![Event::WalletAdded {
                    user_id,
                    wallet_id,
                    address: *address,
                }],
                reply: Reply::WalletId(wallet_id),
            })
        }
        Command::PlaceOrder(p) => place(account, p),
        Command::Deduct { order_id, amount } => {
            let order = order.ok_or(DomainError::OrderNotFound(*order_id))?;
            if order.user_id != user_id {
                return Err(DomainError::OrderNotOwned(*order_id));
            }
            if order.price != *amount {
                return Err(DomainError::AmountMismatch {
                    expected: order.price,
                    given: *amount,
                });
            }
            if order.paid || order.kind == OrderKind::Manual {
                return Ok(Decision::reply(Reply::Paid(false)));
            }
            let balance_after =
                account
                    .balance
                    .checked_sub(*amount)
                    .ok_or(DomainError::InsufficientBalance {
                        required: *amount,
                        current: account.balance,
                    })?;
            Ok(Decision {
                events: vec![Event::BalanceDebited {
                    user_id,
                    order_id: *order_id,
                    amount: *amount,
                    balance_after,
                }],
                reply: Reply::Paid(true),
            })
        }
        Command::Refund { order_id } => {
            let order = order
                .filter(|o| o.user_id == user_id)
                .ok_or(DomainError::OrderNotFound(*order_id))?;
            if order.refunded || !order.paid {
                return Ok(Decision::reply(Reply::Done));
            }
            // Only an order that failed is given its payment back: a live or completed
            // order's energy is (or may yet be) delegated.
            if order.status != OrderStatus::Failed {
                return Err(DomainError::InvalidTransition {
                    order: *order_id,
                    status: order.status.as_str().into(),
                    action: "refund".into(),
                });
            }
            let balance_after = account
                .balance
                .checked_add(order.price)
                .ok_or(DomainError::Overflow)?;
            Ok(Decision {
                events: vec![
                    Event::OrderRefunded {
                        order_id: *order_id,
                        user_id,
                        amount: order.price,
                    },
                    Event::BalanceRefunded {
                        user_id,
                        order_id: *order_id,
                        amount: order.price,
                        balance_after,
                    },
                ],
                reply: Reply::Done,
            })
        }
    }
}

/// Places and pays an order, or answers the order an earlier identical request placed.
fn place(account: &UserAccount, p: &PlaceOrder) -> Result<Decision, DomainError> {
    let user_id = account.user_id;
    if let Some((key, fingerprint)) = &p.idempotency {
        if let Some((earlier, used_by)) = account.idempotency.get(key) {
            return if used_by == fingerprint {
                Ok(Decision::reply(Reply::Placed(Placed::Replayed(*earlier))))
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
    let reply = Reply::Placed(Placed::New(p.order_id));
    if p.kind == OrderKind::Manual {
        return Ok(Decision {
            events: vec![placed],
            reply,
        });
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
    Ok(Decision {
        events: vec![placed, debited],
        reply,
    })
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
