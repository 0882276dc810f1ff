//! Commands as data: what a partition's writer is asked to decide, and what the decision
//! answers besides its events. A command is plain data, so it can be logged, compared in a
//! test, or sent to the instance that writes its partition; every rule it is decided by
//! lives in the aggregates' `decide` functions, which this module only dispatches to.

use super::account::{self, Placed};
use super::pool::{self, ReserveOutcome};
use super::{keys, order, DomainError, PartitionState};
use flashrent_events::{Event, OrderId, Sun, UserId, API_KEYS_KEY, WALLET_POOL_KEY};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
pub enum Command {
    /// To a user's account (and, for a deduction or refund, the order it names).
    Account {
        user: UserId,
        command: account::Command,
    },
    /// To an order, kept in its user's partition.
    Order {
        user: UserId,
        order: OrderId,
        command: order::Command,
    },
    /// To the wallet pool.
    Pool { command: pool::Command },
    /// To the API keys.
    ApiKeys { command: keys::Command },
}

/// What a decided command answers besides its events (an already-recorded effect answers
/// with no events and the same reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum Reply {
    Done,
    /// The account's balance after a credit.
    Balance(Sun),
    /// The id of the wallet bound.
    WalletId(u32),
    Placed(Placed),
    /// Whether the deduction paid the order (false: it was paid already).
    Paid(bool),
    Reserve(ReserveOutcome),
}

impl Reply {
    pub fn balance(&self) -> Option<Sun> {
        match self {
            Reply::Balance(b) => Some(*b),
            _ => None,
        }
    }
    pub fn wallet_id(&self) -> Option<u32> {
        match self {
            Reply::WalletId(id) => Some(*id),
            _ => None,
        }
    }
    pub fn placed(&self) -> Option<Placed> {
        match self {
            Reply::Placed(p) => Some(*p),
            _ => None,
        }
    }
    pub fn paid(&self) -> Option<bool> {
        match self {
            Reply::Paid(p) => Some(*p),
            _ => None,
        }
    }
    pub fn reserve(&self) -> Option<ReserveOutcome> {
        match self {
            Reply::Reserve(r) => Some(*r),
            _ => None,
        }
    }
}

/// A command's events and its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub reply: Reply,
}

impl Decision {
    /// Nothing to record, and this answer.
    pub fn reply(reply: Reply) -> Decision {
        Decision {
            events: vec![],
            reply,
        }
    }

    fn done(events: Vec<Event>) -> Decision {
        Decision {
            events,
            reply: Reply::Done,
        }
    }
}

/// The account and order a command reads besides its partition's pool and keys: its
/// writer has them read back from its snapshot before deciding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touches {
    pub user: Option<UserId>,
    pub order: Option<OrderId>,
}

impl Command {
    /// The key its partition is chosen by: the user (accounts and orders), or the pool's or
    /// the keys' own.
    pub fn key(&self) -> String {
        match self {
            Command::Account { user, .. } | Command::Order { user, .. } => user.to_string(),
            Command::Pool { .. } => WALLET_POOL_KEY.to_owned(),
            Command::ApiKeys { .. } => API_KEYS_KEY.to_owned(),
        }
    }

    pub fn touches(&self) -> Touches {
        match self {
            Command::Account { user, command } => Touches {
                user: Some(*user),
                // A new order is nowhere yet: only the ones a command names are read.
                order: match command {
                    account::Command::PlaceOrder(_) => None,
                    c => c.order_id(),
                },
            },
            Command::Order { user, order, .. } => Touches {
                user: Some(*user),
                order: Some(*order),
            },
            Command::Pool { command } => Touches {
                user: None,
                order: command.order_id(),
            },
            Command::ApiKeys { .. } => Touches::default(),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Account { command, .. } => match command {
                account::Command::Credit { .. } => "credit",
                account::Command::AddWallet { .. } => "add_wallet",
                account::Command::PlaceOrder(_) => "place_order",
                account::Command::Deduct { .. } => "deduct",
                account::Command::Refund { .. } => "refund",
            },
            Command::Order { .. } => "order",
            Command::Pool { .. } => "pool",
            Command::ApiKeys { .. } => "api_keys",
        }
    }
}

impl PartitionState {
    /// Decides `command` against this partition's state. Pure: what it needs of the world
    /// (now, prices, the chain's answers) is in the command.
    pub fn decide(&self, command: &Command) -> Result<Decision, DomainError> {
        match command {
            Command::Account { user, command } => {
                let order = command.order_id().and_then(|id| self.orders.get(&id));
                match self.accounts.get(user) {
                    Some(acc) => account::decide(acc, order, command),
                    None => account::decide(&account::UserAccount::new(*user), order, command),
                }
            }
            Command::Order {
                user,
                order,
                command,
            } => {
                let o = self
                    .orders
                    .get(order)
                    .filter(|o| o.user_id == *user)
                    .ok_or(DomainError::OrderNotFound(*order))?;
                Ok(Decision::done(order::decide(o, command)?))
            }
            Command::Pool { command } => pool::decide(&self.pool, command),
            Command::ApiKeys { command } => {
                Ok(Decision::done(keys::decide(&self.api_keys, command)?))
            }
        }
    }
}
