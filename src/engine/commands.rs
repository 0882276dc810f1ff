//! The commands of each aggregate, as typed calls on the engine: each builds its
//! [`Command`], which the partition's writer decides (`PartitionState::decide`), and reads
//! its reply.

use super::{CommandMeta, Engine, EngineError, Executed};
use crate::domain::account::{self, Placed};
use crate::domain::pool::{self, ReserveOutcome};
use crate::domain::{keys, order, Command, Reply};
use flashrent_events::{EnergyAmount, OrderId, Sun, TronAddress, UserId};

/// A reply of another kind than the command's: a fault of ours, never of the request.
fn unexpected(reply: Reply) -> EngineError {
    EngineError::UnexpectedReply(format!("{reply:?}"))
}

impl Engine {
    /// Whether this instance writes `user`'s partition now.
    pub fn writes_for(&self, user: UserId) -> bool {
        self.owns(self.partition_of(&user.to_string()))
    }

    /// Runs an account command and reads its reply with `read`.
    async fn account<R>(
        &self,
        meta: CommandMeta,
        user: UserId,
        command: account::Command,
        read: impl FnOnce(&Reply) -> Option<R>,
    ) -> Result<Executed<R>, EngineError> {
        let done = self
            .execute(meta, Command::Account { user, command })
            .await?;
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
        Ok(self.execute(meta, command).await?.map(|_| ()))
    }

    /// Issues, revokes or records the use of API keys.
    pub async fn api_key_command(
        &self,
        meta: CommandMeta,
        command: keys::Command,
    ) -> Result<Executed<()>, EngineError> {
        Ok(self
            .execute(meta, Command::ApiKeys { command })
            .await?
            .map(|_| ()))
    }

    /// Registers a supplier wallet in the pool.
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
        self.pool_command(meta, command).await
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

    /// Reserves energy for an order; the reply is where the pool put it.
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
        let done = self.execute(meta, Command::Pool { command }).await?;
        match done.reply.reserve() {
            Some(r) => Ok(done.map(|_| r)),
            None => Err(unexpected(done.reply)),
        }
    }

    pub async fn pool_command(
        &self,
        meta: CommandMeta,
        command: pool::Command,
    ) -> Result<Executed<()>, EngineError> {
        Ok(self
            .execute(meta, Command::Pool { command })
            .await?
            .map(|_| ()))
    }
}
