//! Commands that land on an instance which no longer writes their partition go on to the
//! instance that does, named by its claim in the log (see `flashrent_events::fence`).
//!
//! Every POST body is kept (they are small, capped at [`MAX_BODY_BYTES`]) so the request can
//! be sent again. The owner answers with the position of what it wrote; this instance waits
//! until its own read models show it, so read-your-writes holds for the client here too.
//! A request that was already forwarded once is never forwarded again (no loops).

use super::error::ApiError;
use super::{AppState, MAX_BODY_BYTES};
use crate::consistency::WRITTEN;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse};
use futures_util::StreamExt;
use std::cell::Cell;
use std::future::Future;
use std::time::Duration;

pub const FORWARDED: &str = "x-flashrent-forwarded";
pub const POSITION: &str = "x-flashrent-position";
/// On an answer to a forwarded command: this instance does not write the partition either,
/// and recorded nothing that counts.
pub const FENCED: &str = "x-flashrent-fenced";
/// Request headers that mean something to the owner.
const PASSED_ON: [&str; 5] = [
    "content-type",
    "authorization",
    "idempotency-key",
    "accept-language",
    "x-api-key",
];
/// Answer headers passed back to the client.
const PASSED_BACK: [&str; 4] = ["content-type", "retry-after", POSITION, FENCED];

pub async fn forward<B, F>(
    mut req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    B: MessageBody + 'static,
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    let shared_log = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|s| s.shared_log);
    // Commands come as POST (and DELETE, to revoke a key); reads are answered here.
    if !matches!(*req.method(), Method::POST | Method::DELETE) || !shared_log {
        return next(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    let method = req.method().clone();
    let mut payload = req.take_payload();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk: Bytes = chunk?;
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BODY_BYTES {
            let e = ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            return Ok(req.into_response(e.response(false)));
        }
    }
    let body = body.freeze();
    req.set_payload(Payload::from(body.clone()));
    let already_forwarded = req.headers().contains_key(FORWARDED);
    let passed_on: Vec<(String, Vec<u8>)> = PASSED_ON
        .iter()
        .filter_map(|h| {
            req.headers()
                .get(*h)
                .map(|v| (h.to_string(), v.as_bytes().to_vec()))
        })
        .collect();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let state = req.app_data::<web::Data<AppState>>().cloned();

    let (res, written) = WRITTEN
        .scope(Cell::new(None), async {
            let res = next(req).await;
            (res, WRITTEN.with(Cell::get))
        })
        .await;
    let mut res = res?.map_into_boxed_body();
    if let Some((partition, offset)) = written {
        if let Ok(v) = header::HeaderValue::from_str(&format!("{partition}:{offset}")) {
            res.headers_mut()
                .insert(header::HeaderName::from_static(POSITION), v);
        }
    }
    let fenced = res
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .and_then(|e| e.fenced);
    if let (Some(p), true) = (fenced, already_forwarded) {
        // Tells the instance that forwarded this that nothing here counts: it may try again.
        res.headers_mut().insert(
            header::HeaderName::from_static(FENCED),
            header::HeaderValue::from(p),
        );
    }
    let (Some(partition), Some(state), false) = (fenced, state, already_forwarded) else {
        return Ok(res);
    };
    // While partitions move between instances, the owner a claim names may have just given
    // the partition up, and the next one not claimed it yet: ask again, briefly.
    let deadline = std::time::Instant::now() + OWNER_CHANGE_GRACE;
    loop {
        let Some(owner) = owner_of(&state, partition).await else {
            return Ok(res);
        };
        let answer = match send_on(&state, &owner, &method, &path, &passed_on, body.clone()).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "cannot forward to the partition's owner");
                return Ok(res);
            }
        };
        if answer.headers().contains_key(FENCED) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        // The mark is between instances; the client gets the refusal (a 503) as it is.
        let mut answer = answer;
        answer.headers_mut().remove(FENCED);
        let (http_req, _) = res.into_parts();
        return Ok(ServiceResponse::new(http_req, answer));
    }
}

/// How long a forwarded command keeps looking for the partition's new owner.
const OWNER_CHANGE_GRACE: Duration = Duration::from_secs(5);

/// The partition's owner by its latest claim. When the claim names this instance, the read
/// models are first brought up to the end of the log (the claim that fenced this instance
/// may be that recent); if it still names this one, this instance claimed the partition
/// since the request was refused, and the request is sent to itself.
async fn owner_of(state: &AppState, partition: u32) -> Option<String> {
    let owner = state.models.owner(partition).ok()??;
    if owner != state.instance_url {
        return Some(owner);
    }
    // Bounded: with the broker gone this answer is a 503 anyway, and it must come quickly.
    let end = tokio::time::timeout(
        Duration::from_secs(1),
        state.engine.log().end_offset(partition),
    )
    .await
    .ok()?
    .ok()?;
    let caught_up = state.models.wait_applied(partition, end.checked_sub(1)?);
    tokio::time::timeout(Duration::from_secs(3), caught_up)
        .await
        .ok()?;
    let owner = state.models.owner(partition).ok()??;
    // Named by its own claim but not writing (the group took the partition away, as when
    // the broker is gone): nobody can take the command now.
    (owner != state.instance_url || state.engine.owns(partition)).then_some(owner)
}

async fn send_on(
    state: &AppState,
    owner: &str,
    method: &Method,
    path: &str,
    headers: &[(String, Vec<u8>)],
    body: Bytes,
) -> Result<HttpResponse, reqwest::Error> {
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes())
        .expect("an HTTP method is a method");
    let mut r = state
        .forwarder
        .request(method, format!("{owner}{path}"))
        .header(FORWARDED, "1")
        .body(body.to_vec());
    for (k, v) in headers {
        r = r.header(k, v.as_slice());
    }
    let answer = r.send().await?;
    let status =
        StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = HttpResponse::build(status);
    let mut position = None;
    for h in PASSED_BACK {
        if let Some(v) = answer.headers().get(h) {
            if h == POSITION {
                position = v.to_str().ok().and_then(parse_position);
            }
            out.insert_header((h, v.as_bytes()));
        }
    }
    let bytes = answer.bytes().await?;
    if let Some((partition, offset)) = position {
        // Read your writes here too; bounded, as the owner already made it durable.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            state.models.wait_applied(partition, offset),
        )
        .await;
    }
    Ok(out.body(bytes))
}

fn parse_position(v: &str) -> Option<(u32, u64)> {
    let (p, o) = v.split_once(':')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}
