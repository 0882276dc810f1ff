//! Between instances on one Kafka topic: which partitions each writes, and the pool commands
//! one instance's saga needs decided by the instance that writes the pool's partition.

use super::Reply;
use crate::domain::pool;
use crate::engine::CommandMeta;
use crate::http::extract::{self, Admin};
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A pool command sent to the instance that writes the pool's partition (its schema is
/// `PoolCommandRequest` in `openapi.rs`, the serde forms of its parts).
#[derive(Serialize, Deserialize)]
pub struct PoolCommandRequest {
    pub meta: CommandMeta,
    pub command: pool::Command,
}

/// Who writes each partition: the owner its latest claim names, and whether it is this one.
#[utoipa::path(
    get,
    path = "/api/admin/partitions",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Each partition with its owner (from the latest claim in the log) and whether this instance writes it", body = crate::http::openapi::Partitions),
    ),
)]
pub async fn partitions(_: Admin, state: web::Data<AppState>) -> Reply {
    let mut out = Vec::new();
    for p in 0..state.engine.log().partition_count() {
        out.push(json!({
            "partition": p,
            "owner": state.models.owner(p)?,
            "written_here": state.engine.owns(p),
        }));
    }
    Ok(HttpResponse::Ok().json(json!({"instance": state.instance_url, "partitions": out})))
}

/// For other instances: decides a pool command here, if this instance writes the pool's
/// partition (else the request goes on to the one that does). Idempotent per order, as the
/// pool's decisions are.
#[utoipa::path(
    post,
    path = "/api/admin/pool-commands",
    tag = "admin",
    request_body = crate::http::openapi::PoolCommandBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Decided and durable: the record's partition, offset, events, and the reservation's outcome", body = crate::http::openapi::PoolCommandDone),
        (status = 409, description = "supplier_wallet_exists"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn pool_command(_: Admin, state: web::Data<AppState>, body: web::Bytes) -> Reply {
    let req: PoolCommandRequest = extract::json_body_integral(&body)?;
    let done = state.engine.pool_here(req.meta, req.command).await?;
    crate::consistency::projected(&state.models, &done).await;
    Ok(HttpResponse::Ok().json(done))
}
