//! Between instances on one Kafka topic: which partitions each writes, and the commands
//! one instance sends the instance that writes their partition.

use super::Reply;
use crate::cluster::remote::{CommandRequest, Refusal, FENCED};
use crate::engine::EngineError;
use crate::http::extract::{self, Admin};
use crate::http::AppState;
use actix_web::{web, HttpResponse};
use flashrent_events::LogError;
use serde_json::json;

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

/// For other instances: decides a command in this instance's writer of its partition,
/// never sending it on (`cluster::remote`). Not part of the public API.
pub async fn command(_: Admin, state: web::Data<AppState>, body: web::Bytes) -> Reply {
    let req: CommandRequest = extract::json_body(&body)?;
    match state.engine.execute_here(req.meta, req.command).await {
        Ok(done) => Ok(HttpResponse::Ok().json(done)),
        Err(EngineError::Domain(refused)) => {
            Ok(HttpResponse::UnprocessableEntity().json(Refusal { refused }))
        }
        Err(EngineError::Log(LogError::Fenced(p))) => Ok(HttpResponse::ServiceUnavailable()
            .insert_header((FENCED, p.to_string()))
            .finish()),
        Err(e) => Err(e.into()),
    }
}
