//! Commands for a partition another instance writes, sent to it as data: `POST
//! /internal/commands` on the owner its partition's latest claim names, authenticated with
//! the admin token (instances sharing a topic share it). The owner decides the command in
//! its own writer only, never sending it on, and answers what it decided (its record's
//! position and events, its reply) or why it refused; the caller here then waits for this
//! instance's read models to show the record, so read-your-writes holds wherever a client
//! is connected.
//! Every command is idempotent (a repeat decides nothing new), so a retry after a lost
//! answer decides nothing twice.

use crate::config::Secret;
use crate::domain::{Command, DomainError, Reply};
use crate::engine::{CommandMeta, EngineError, Executed, Partitions, Remote};
use flashrent_events::{LogError, PartitionId};
use flashrent_projections::ReadModels;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The internal route's path.
pub const PATH: &str = "/internal/commands";
/// On an owner's answer: it does not write the partition either (a claim moved on).
pub const FENCED: &str = "x-flashrent-fenced";
/// How long a command keeps looking for the partition's new owner while partitions move.
const OWNER_CHANGE_GRACE: Duration = Duration::from_secs(5);

/// A command sent to the instance that writes its partition.
#[derive(Serialize, Deserialize)]
pub struct CommandRequest {
    pub meta: CommandMeta,
    pub command: Command,
}

/// What the owner answers a refused command with (status 422): the refusal itself.
#[derive(Serialize, Deserialize)]
pub struct Refusal {
    pub refused: DomainError,
}

pub struct HttpRemote {
    pub models: ReadModels,
    pub client: reqwest::Client,
    pub admin_token: Secret,
    /// This instance's own URL (what its claims name).
    pub instance_url: String,
    /// The engine's log and partitions, to learn where the log ends and whether this
    /// instance writes a partition (set once the engine is started: the engine holds this
    /// remote, so this must not hold the engine).
    pub engine: OnceLock<Partitions>,
}

fn unavailable(why: impl std::fmt::Display) -> EngineError {
    EngineError::Log(LogError::unavailable(why.to_string()))
}

/// The owner at `owner` could not be asked or its answer read.
fn unreachable(owner: &str, e: reqwest::Error) -> EngineError {
    EngineError::Log(LogError::unavailable_by(
        format!("asking {owner}"),
        e.without_url(),
    ))
}

/// One try at the owner.
enum Sent {
    Decided(Executed<Reply>),
    /// The owner does not write the partition (any more): ask again, briefly.
    NotThere(String),
}

impl HttpRemote {
    pub fn new(
        models: ReadModels,
        client: reqwest::Client,
        admin_token: Secret,
        instance_url: String,
    ) -> Arc<HttpRemote> {
        Arc::new(HttpRemote {
            models,
            client,
            admin_token,
            instance_url,
            engine: OnceLock::new(),
        })
    }

    /// The partition's owner by its latest claim. When the claim names this instance, the
    /// read models are first brought up to the end of the log (the claim that fenced this
    /// instance may be that recent); if it still names this one, this instance claimed the
    /// partition since, and the command is sent to itself.
    async fn owner(&self, partition: PartitionId) -> Option<String> {
        let owner = self.models.owner(partition).ok()??;
        if owner != self.instance_url {
            return Some(owner);
        }
        let engine = self.engine.get()?;
        // Bounded: with the broker gone the answer is a 503 anyway, and it must come quickly.
        let end = tokio::time::timeout(Duration::from_secs(1), engine.log().end_offset(partition))
            .await
            .ok()?
            .ok()?;
        let caught_up = self.models.wait_applied(partition, end.checked_sub(1)?);
        tokio::time::timeout(Duration::from_secs(3), caught_up)
            .await
            .ok()?;
        let owner = self.models.owner(partition).ok()??;
        // Named by its own claim but not writing (the group took the partition away, as when
        // the broker is gone): nobody can take the command now.
        (owner != self.instance_url || engine.owns(partition)).then_some(owner)
    }

    async fn send(&self, owner: &str, request: &CommandRequest) -> Result<Sent, EngineError> {
        let answer = self
            .client
            .post(format!("{owner}{PATH}"))
            .bearer_auth(self.admin_token.expose())
            .json(request)
            .send()
            .await
            .map_err(|e| unreachable(owner, e))?;
        let status = answer.status().as_u16();
        if answer.headers().contains_key(FENCED) {
            return Ok(Sent::NotThere(format!(
                "{owner} no longer writes the partition"
            )));
        }
        match status {
            200 => answer
                .json()
                .await
                .map(Sent::Decided)
                .map_err(|e| unreachable(owner, e)),
            422 => {
                let r: Refusal = answer.json().await.map_err(|e| unreachable(owner, e))?;
                Err(EngineError::Domain(r.refused))
            }
            401 => {
                tracing::error!(%owner, "the partition's owner refused this instance's admin token: instances on one topic must share FLASHRENT_ADMIN_TOKEN");
                Err(unavailable(format!("{owner} refused the admin token")))
            }
            _ => Err(unavailable(format!("{owner} answered {status}"))),
        }
    }
}

#[async_trait::async_trait]
impl Remote for HttpRemote {
    async fn execute(
        &self,
        partition: PartitionId,
        meta: CommandMeta,
        command: Command,
    ) -> Result<Executed<Reply>, EngineError> {
        let request = CommandRequest { meta, command };
        // While partitions move between instances, the owner a claim names may have just
        // given the partition up, and the next one not claimed it yet: ask again, briefly.
        let deadline = Instant::now() + OWNER_CHANGE_GRACE;
        loop {
            let why = match self.owner(partition).await {
                None => format!("no instance writes partition {partition} now"),
                Some(owner) => match self.send(&owner, &request).await? {
                    // The caller waits for this instance's read models to show the record
                    // (`consistency::projected`), as it does for a record written here.
                    Sent::Decided(done) => return Ok(done),
                    Sent::NotThere(why) => why,
                },
            };
            if Instant::now() >= deadline {
                return Err(unavailable(why));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
