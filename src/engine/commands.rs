//! The commands of each aggregate, as calls on the engine: each routes to the right
//! partition and runs the aggregate's pure `decide` there.

use super::{CommandMeta, Engine, EngineError, Executed, Touches};
use crate::domain::account::{self, Placed};
use crate::domain::{keys, order, pool, DomainError, PartitionState};
use flashrent_events::{
    EnergyAmount, Event, LogError, OrderId, Sun, TronAddress, UserId, API_KEYS_KEY, WALLET_POOL_KEY,
};

/// Where the pool put an order's energy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReserveOutcome {
    Reserved { wallet: TronAddress },
    Rejected,
}

fn key(user: UserId) -> String {
    user.to_string()
}

fn account(user: UserId) -> Touches {
    Touches {
        user: Some(user),
        order: None,
    }
}

fn account_and_order(user: UserId, order: OrderId) -> Touches {
    Touches {
        user: Some(user),
        order: Some(order),
    }
}

impl Engine {
    /// Whether this instance writes `user`'s partition now.
    pub fn writes_for(&self, user: UserId) -> bool {
        self.owns(self.partition_of(&key(user)))
    }

    pub async fn credit(
        &self,
        meta: CommandMeta,
        user: UserId,
        amount: Sun,
        reference: String,
    ) -> Result<Executed<Sun>, EngineError> {
        self.execute(&key(user), account(user), meta, move |s| {
            let acc = s.account(user);
            let events = account::decide(&acc, account::Command::Credit { amount, reference })?;
            let after = events.iter().find_map(|e| match e {
                flashrent_events::Event::BalanceCredited { balance_after, .. } => {
                    Some(*balance_after)
                }
                _ => None,
            });
            Ok((events, after.unwrap_or(acc.balance)))
        })
        .await
    }

    pub async fn add_wallet(
        &self,
        meta: CommandMeta,
        user: UserId,
        address: TronAddress,
    ) -> Result<Executed<u32>, EngineError> {
        self.execute(&key(user), account(user), meta, move |s| {
            let acc = s.account(user);
            let id = acc.wallets.len() as u32 + 1;
            Ok((
                account::decide(&acc, account::Command::AddWallet { address })?,
                id,
            ))
        })
        .await
    }

    pub async fn place_order(
        &self,
        meta: CommandMeta,
        user: UserId,
        order: account::PlaceOrder,
    ) -> Result<Executed<Placed>, EngineError> {
        self.execute(&key(user), account(user), meta, move |s| {
            let acc = s.account(user);
            let replay = order
                .idempotency
                .as_ref()
                .and_then(|(k, _)| acc.idempotent_order(k))
                .map(|(id, _)| *id);
            let new_id = order.order_id;
            let events = account::decide(&acc, account::Command::PlaceOrder(Box::new(order)))?;
            let placed = match replay {
                Some(id) if events.is_empty() => Placed::Replayed(id),
                _ => Placed::New(new_id),
            };
            Ok((events, placed))
        })
        .await
    }

    /// Pays an order; the reply says whether this call paid it (false: it was paid already).
    pub async fn deduct(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
        amount: Sun,
    ) -> Result<Executed<bool>, EngineError> {
        self.execute(
            &key(user),
            account_and_order(user, order_id),
            meta,
            move |s| {
                let acc = s.account(user);
                let order = s.orders.get(&order_id).cloned();
                let events = account::decide(
                    &acc,
                    account::Command::Deduct {
                        order,
                        order_id,
                        amount,
                    },
                )?;
                let paid_now = !events.is_empty();
                Ok((events, paid_now))
            },
        )
        .await
    }

    pub async fn refund(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
    ) -> Result<Executed<()>, EngineError> {
        self.on_order(meta, user, order_id, move |s, order| {
            if order.status != order::OrderStatus::Failed && !order.refunded {
                return Err(DomainError::InvalidTransition {
                    order: order_id,
                    status: order.status.as_str(),
                    action: "refund",
                });
            }
            let order = order.clone();
            Ok((
                account::decide(&s.account(user), account::Command::Refund { order })?,
                (),
            ))
        })
        .await
    }

    pub async fn order_command(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
        command: order::Command,
    ) -> Result<Executed<()>, EngineError> {
        self.on_order(meta, user, order_id, move |_, order| {
            Ok((order::decide(order, command)?, ()))
        })
        .await
    }

    /// Decides on an existing order of `user`, with its partition's state at hand.
    async fn on_order<R: Send + 'static>(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
        decide: impl FnOnce(&PartitionState, &order::Order) -> Result<(Vec<Event>, R), DomainError>
            + Send
            + 'static,
    ) -> Result<Executed<R>, EngineError> {
        let touches = account_and_order(user, order_id);
        self.execute(&key(user), touches, meta, move |s| {
            let order = s
                .orders
                .get(&order_id)
                .ok_or(DomainError::OrderNotFound(order_id))?;
            decide(s, order)
        })
        .await
    }

    /// Issues, revokes or records the use of API keys. Like an admin request, it is decided
    /// by the instance that writes the keys' partition (forwarded there when that is another).
    pub async fn api_key_command(
        &self,
        meta: CommandMeta,
        command: keys::Command,
    ) -> Result<Executed<()>, EngineError> {
        self.execute(API_KEYS_KEY, Touches::default(), meta, move |s| {
            Ok((keys::decide(&s.api_keys, command)?, ()))
        })
        .await
    }

    /// Registers a supplier wallet here: an HTTP request for the pool's partition that this
    /// instance does not write is forwarded whole (`http::forward`), not sent on as a command.
    pub async fn register_supplier(
        &self,
        meta: CommandMeta,
        address: TronAddress,
        energy_capacity: EnergyAmount,
    ) -> Result<Executed<()>, EngineError> {
        let command = pool::Command::Register {
            address,
            energy_capacity,
        };
        Ok(self.pool_here(meta, command).await?.map(|_| ()))
    }

    /// Records what the chain says `address` can still delegate (nothing if unchanged).
    pub async fn observe_chain_inventory(
        &self,
        meta: CommandMeta,
        address: TronAddress,
        delegatable: u64,
    ) -> Result<Executed<()>, EngineError> {
        let command = pool::Command::ObserveChainInventory {
            address,
            delegatable,
        };
        self.pool_command(meta, command).await
    }

    pub async fn reserve(
        &self,
        meta: CommandMeta,
        order_id: OrderId,
        energy: EnergyAmount,
        pinned_wallet: Option<TronAddress>,
    ) -> Result<Executed<ReserveOutcome>, EngineError> {
        let command = pool::Command::Reserve {
            order_id,
            energy,
            pinned_wallet,
        };
        let done = self.pool_anywhere(meta, command).await?;
        Ok(done.map(|r| r.unwrap_or(ReserveOutcome::Rejected)))
    }

    pub async fn pool_command(
        &self,
        meta: CommandMeta,
        command: pool::Command,
    ) -> Result<Executed<()>, EngineError> {
        Ok(self.pool_anywhere(meta, command).await?.map(|_| ()))
    }

    /// A pool command decided here, or by the instance that writes the pool's partition when
    /// that is another one (on a shared log). The reply is the reservation's outcome for
    /// `Reserve`, `None` otherwise.
    async fn pool_anywhere(
        &self,
        meta: CommandMeta,
        command: pool::Command,
    ) -> Result<Executed<Option<ReserveOutcome>>, EngineError> {
        let partition = self.partition_of(WALLET_POOL_KEY);
        let remote = self.remote_pool();
        let here = match remote {
            Some(remote) if !self.assigned(partition) => {
                return remote.execute(partition, meta, command).await
            }
            _ => self.pool_here(meta, command.clone()).await,
        };
        match (here, remote) {
            (Err(EngineError::Log(LogError::Fenced(_))), Some(remote)) => {
                remote.execute(partition, meta, command).await
            }
            (here, _) => here,
        }
    }

    /// A pool command decided by this instance's writer (fenced if it does not write the
    /// pool's partition).
    pub async fn pool_here(
        &self,
        meta: CommandMeta,
        command: pool::Command,
    ) -> Result<Executed<Option<ReserveOutcome>>, EngineError> {
        let order = command.order_id();
        let reserving = order.filter(|_| matches!(command, pool::Command::Reserve { .. }));
        let touches = Touches { user: None, order };
        self.execute(WALLET_POOL_KEY, touches, meta, move |s| {
            let events = pool::decide(&s.pool, command)?;
            let outcome = reserving.map(|order_id| {
                events
                    .iter()
                    .find_map(|e| match e {
                        Event::EnergyReserved { wallet, .. } => {
                            Some(ReserveOutcome::Reserved { wallet: *wallet })
                        }
                        Event::EnergyReservationRejected { .. } => Some(ReserveOutcome::Rejected),
                        _ => None,
                    })
                    .or_else(|| {
                        s.pool
                            .reservations
                            .get(&order_id)
                            .map(|r| ReserveOutcome::Reserved { wallet: r.wallet })
                    })
                    .unwrap_or(ReserveOutcome::Rejected)
            });
            Ok((events, outcome))
        })
        .await
    }
}
