//! The commands of each aggregate, as typed calls on the engine: each builds its
//! [`Command`], which the partition's writer decides (`PartitionState::decide`), and reads
//! its reply.

use super::{CommandMeta, Engine, EngineError, Executed, Touches};
use crate::domain::account::{self, Placed};
use crate::domain::pool::{self, ReserveOutcome};
use crate::domain::{keys, order, Command, Reply};
use flashrent_events::{EnergyAmount, LogError, OrderId, Sun, TronAddress, UserId};

/// A reply of another kind than the command's: a fault of ours, never of the request.
fn unexpected(reply: Reply) -> EngineError {
    EngineError::UnexpectedReply(format!("{reply:?}"))
}

impl Engine {
    /// Whether this instance writes `user`'s partition now.
    pub fn writes_for(&self, user: UserId) -> bool {
        self.owns(self.partition_of(&user.to_string()))
    }

    /// Decides `command` in its partition's writer; answers once what it decided is durable.
    pub async fn run(
        &self,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError> {
        let key = command.key();
        let t = command.touches();
        let touches = Touches {
            user: t.user,
            order: t.order,
        };
        self.execute(&key, touches, meta, move |s| {
            let decision = s.decide(&command)?;
            Ok((decision.events, decision.reply))
        })
        .await
    }

    /// Runs an account command and reads its reply with `read`.
    async fn account<R>(
        &self,
        meta: CommandMeta,
        user: UserId,
        command: account::Command,
        read: impl FnOnce(&Reply) -> Option<R>,
    ) -> Result<Executed<R>, EngineError> {
        let done = self.run(meta, Command::Account { user, command }).await?;
        match read(&done.reply) {
            Some(r) => Ok(done.map(|_| r)),
            None => Err(unexpected(done.reply)),
        }
    }

    /// Credits a balance; the reply is the balance after.
    pub async fn credit(
        &self,
        meta: CommandMeta,
        user: UserId,
        amount: Sun,
        reference: String,
    ) -> Result<Executed<Sun>, EngineError> {
        let command = account::Command::Credit { amount, reference };
        self.account(meta, user, command, Reply::balance).await
    }

    /// Binds a wallet; the reply is its id.
    pub async fn add_wallet(
        &self,
        meta: CommandMeta,
        user: UserId,
        address: TronAddress,
    ) -> Result<Executed<u32>, EngineError> {
        let command = account::Command::AddWallet { address };
        self.account(meta, user, command, Reply::wallet_id).await
    }

    pub async fn place_order(
        &self,
        meta: CommandMeta,
        user: UserId,
        order: account::PlaceOrder,
    ) -> Result<Executed<Placed>, EngineError> {
        let command = account::Command::PlaceOrder(Box::new(order));
        self.account(meta, user, command, Reply::placed).await
    }

    /// Pays an order; the reply says whether this call paid it (false: it was paid already).
    pub async fn deduct(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
        amount: Sun,
    ) -> Result<Executed<bool>, EngineError> {
        let command = account::Command::Deduct { order_id, amount };
        self.account(meta, user, command, Reply::paid).await
    }

    pub async fn refund(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
    ) -> Result<Executed<()>, EngineError> {
        let command = account::Command::Refund { order_id };
        self.account(meta, user, command, |_| Some(())).await
    }

    pub async fn order_command(
        &self,
        meta: CommandMeta,
        user: UserId,
        order_id: OrderId,
        command: order::Command,
    ) -> Result<Executed<()>, EngineError> {
        let command = Command::Order {
            user,
            order: order_id,
            command,
        };
        Ok(self.run(meta, command).await?.map(|_| ()))
    }

    /// Issues, revokes or records the use of API keys. Like an admin request, it is decided
    /// by the instance that writes the keys' partition (forwarded there when that is another).
    pub async fn api_key_command(
        &self,
        meta: CommandMeta,
        command: keys::Command,
    ) -> Result<Executed<()>, EngineError> {
        Ok(self
            .run(meta, Command::ApiKeys { command })
            .await?
            .map(|_| ()))
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
        let partition = self.partition_of(flashrent_events::WALLET_POOL_KEY);
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
        let done = self.run(meta, Command::Pool { command }).await?;
        Ok(done.map(|r| r.reserve()))
    }
}
