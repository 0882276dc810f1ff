//! The envelope every event travels in, and the record that carries one command's events.

use crate::Event;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AggregateKind {
    UserAccount,
    Order,
    WalletPool,
    /// The API keys that may use client routes.
    ApiKeys,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: Uuid,
    pub aggregate: AggregateKind,
    pub aggregate_id: String,
    /// 1 for an aggregate's first event, then +1 for each of its events.
    pub sequence: u64,
    pub occurred_at: DateTime<Utc>,
    pub schema_version: u16,
    /// The request (or saga run) the whole chain of commands belongs to.
    pub correlation_id: Uuid,
    /// The command that produced this event.
    pub causation_id: Uuid,
    #[serde(flatten)]
    pub event: Event,
}

/// One record of the log: all the events one command produced, appended atomically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub command_id: Uuid,
    /// The key the partition was chosen from (a user id, or `wallet-pool`).
    pub key: String,
    /// The epoch of the writer that decided this command; readers ignore records of a
    /// writer older than one they have already seen for the partition.
    #[serde(default)]
    pub writer_epoch: u64,
    pub events: Vec<Envelope>,
    /// On a claim (see [`crate::fence`]): where the new owner takes commands (its HTTP base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl CommandRecord {
    /// A writer's claim of its partition: a record naming its owner (it has no events).
    pub fn is_claim(&self) -> bool {
        self.owner.is_some()
    }
}
