//! The ways a command can be refused. Each has a stable code the HTTP layer shows. A
//! refusal is data too: the instance that writes a partition sends it back as it is to the
//! one whose request it decided.

use flashrent_events::{ApiKeyId, OrderId, Sun, TronAddress};
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(tag = "refused", content = "detail", rename_all = "snake_case")]
pub enum DomainError {
    #[error("insufficient balance: {current} available, {required} required")]
    InsufficientBalance { required: Sun, current: Sun },
    #[error("wallet {0} is already bound to this user")]
    DuplicateWallet(TronAddress),
    #[error("a user can bind at most {0} wallets")]
    TooManyWallets(usize),
    #[error("credit reference {reference} was already used with amount {amount}")]
    CreditReferenceConflict { reference: String, amount: Sun },
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("order {0} does not exist")]
    OrderNotFound(OrderId),
    #[error("order {0} belongs to another user")]
    OrderNotOwned(OrderId),
    #[error("amount {given} does not match the order's price {expected}")]
    AmountMismatch { expected: Sun, given: Sun },
    #[error("supplier wallet {0} is already registered")]
    SupplierWalletExists(TronAddress),
    #[error("order {order} cannot {action} while {status}")]
    InvalidTransition {
        order: OrderId,
        status: Cow<'static, str>,
        action: Cow<'static, str>,
    },
    #[error("the amount overflows")]
    Overflow,
    #[error("API key {0} does not exist")]
    ApiKeyNotFound(ApiKeyId),
    #[error("an API key with this id or hash exists already")]
    ApiKeyExists,
}
