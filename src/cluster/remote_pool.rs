//! The saga's pool commands, sent to the instance that writes the pool's partition when that
//! is not this one. The owner is the one the partition's latest claim names; the request is
//! authenticated with the admin token (instances sharing a topic share it). Every pool
//! command is idempotent per order, so a retry after a lost answer decides nothing twice.

use crate::config::Secret;
use crate::domain::pool;
use crate::engine::{CommandMeta, EngineError, Executed, RemotePool, ReserveOutcome};
use crate::http::routes::cluster::PoolCommandRequest;
use flashrent_events::{LogError, PartitionId};
use flashrent_projections::ReadModels;

pub struct HttpRemotePool {
    pub models: ReadModels,
    pub client: reqwest::Client,
    pub admin_token: Secret,
    /// This instance's own URL, never asked.
    pub instance_url: String,
}

fn unavailable(why: impl std::fmt::Display) -> EngineError {
    EngineError::Log(LogError::Unavailable(why.to_string()))
}

#[async_trait::async_trait]
impl RemotePool for HttpRemotePool {
    async fn execute(
        &self,
        partition: PartitionId,
        meta: CommandMeta,
        command: pool::Command,
    ) -> Result<Executed<Option<ReserveOutcome>>, EngineError> {
        let owner = self
            .models
            .owner(partition)
            .map_err(unavailable)?
            .filter(|o| *o != self.instance_url)
            .ok_or_else(|| {
                unavailable(format!(
                    "no other instance has claimed partition {partition} yet"
                ))
            })?;
        let answer = self
            .client
            .post(format!("{owner}/api/admin/pool-commands"))
            .bearer_auth(self.admin_token.expose())
            .json(&PoolCommandRequest { meta, command })
            .send()
            .await
            .map_err(|e| unavailable(format!("{owner}: {e}")))?;
        let status = answer.status();
        if status.is_success() {
            return answer
                .json()
                .await
                .map_err(|e| unavailable(format!("{owner}: {e}")));
        }
        let body: serde_json::Value = answer.json().await.unwrap_or_default();
        let code = body["error"].as_str().unwrap_or("unknown").to_owned();
        let message = body["message"].as_str().unwrap_or_default().to_owned();
        if status.is_server_error() {
            return Err(unavailable(format!(
                "{owner} answered {status}: {code} {message}"
            )));
        }
        if status.as_u16() == 401 {
            tracing::error!(%owner, "the pool's owner refused this instance's admin token: instances on one topic must share FLASHRENT_ADMIN_TOKEN");
        }
        Err(EngineError::Remote { code, message })
    }
}
