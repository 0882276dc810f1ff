//! Orders (seed §3, §4, §7): creation with payment, the explicit deduction, status.

use super::{meta, Reply};
use crate::domain::account::{PlaceOrder, Placed};
use crate::http::access::Grant;
use crate::http::error::{trx_json, ApiError};
use crate::http::extract::{self, Client, QueryParams};
use crate::http::openapi::field;
use crate::http::AppState;
use actix_web::http::{header::ContentType, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_events::{OrderId, OrderKind, OrderStatus};
use flashrent_projections::OrderView;
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};

/// The order's API body as a JSON value, for answers that embed it.
pub fn render(o: &OrderView) -> Value {
    serde_json::from_slice(&o.body_json()).expect("an order body is JSON")
}

#[derive(Deserialize, utoipa::ToSchema)]
struct CreateOrder {
    #[schema(schema_with = field::user_id)]
    user_id: Box<RawValue>,
    #[schema(schema_with = field::order_energy)]
    energy_amount: Box<RawValue>,
    #[schema(schema_with = field::offered_duration)]
    duration: String,
    #[schema(schema_with = field::address)]
    receive_address: String,
    /// The price the client expects (from a quote): refused with 409 `price_mismatch` when
    /// it is not the server's. Without it the server's price is taken.
    #[schema(schema_with = field::trx_amount_or_null)]
    cost_trx: Option<Box<RawValue>>,
    /// Where the order's webhooks go (see Notifications in the README).
    #[schema(schema_with = field::callback_url_or_null)]
    callback_url: Option<String>,
    #[schema(schema_with = field::out_trade_no_or_null)]
    out_trade_no: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<crate::http::openapi::IdempotencyKeyParam>, Header, description = "Makes the request safe to retry: the same key with the same request answers the first result")),
    security((), ("api_key" = [])),
    responses(
        (status = 201, description = "Placed and paid", body = crate::http::openapi::OrderCreated),
        (status = 200, description = "Replayed (same Idempotency-Key, same request): nothing new recorded", body = crate::http::openapi::OrderCreated,
            headers(("Idempotent-Replayed" = String, description = "`true`"))),
        (status = 400, description = "invalid_user_id, invalid_energy_amount, invalid_duration, invalid_wallet_address, invalid_callback_url, invalid_amount, invalid_idempotency_key, duration_not_offered, energy_out_of_range"),
        (status = 402, description = "insufficient_balance"),
        (status = 403, description = "forbidden_user"),
        (status = 409, description = "price_mismatch"),
        (status = 422, description = "idempotency_key_reused"),
        (status = 429, description = "rate_limited"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn create(
    client: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Reply {
    let b: CreateOrder = extract::json_body(&body)?;
    let user = extract::user_field(&b.user_id)?;
    client.acts_for(user)?;
    state.order_limits.check(user, client.key)?;
    let energy = extract::energy_field(&b.energy_amount)?;
    let duration = extract::duration(&b.duration)?;
    let receive_address = extract::address("receive_address", &b.receive_address)?;
    let callback = extract::order_callback(
        b.callback_url.as_deref(),
        b.out_trade_no.as_deref(),
        state.allow_private_callbacks,
    )?;
    let price = state
        .prices
        .quote(energy, duration)
        .map_err(|e| pricing_error(&state, e))?;
    if let Some(raw) = &b.cost_trx {
        let offered = extract::trx_amount("cost_trx", raw)?;
        if offered != price {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "price_mismatch",
                format!(
                    "订单金额不符：报价为 {} TRX，请求为 {} TRX",
                    price.trx_text(2),
                    offered.trx_text(2)
                ),
                format!(
                    "price mismatch: the price is {} TRX, the request says {} TRX",
                    price.trx_text(2),
                    offered.trx_text(2)
                ),
            )
            .with("quoted_cost_trx", trx_json(price, 0))
            .with("quoted_cost_sun", json!(price.as_sun())));
        }
    }
    let idempotency = extract::idempotency_key(&req)?.map(|k| {
        (
            k,
            format!(
                "{user}|{energy}|{duration}|{receive_address}|{}",
                price.as_sun()
            ),
        )
    });
    let m = meta(&req);
    let estimated_completion = m.now
        + chrono::Duration::from_std(state.chain.expected_confirmation()).unwrap_or_default()
        + chrono::Duration::seconds(5);
    let order = PlaceOrder {
        order_id: OrderId::new_v7(),
        kind: OrderKind::Rental,
        energy,
        duration,
        receive_address,
        price,
        pinned_wallet: None,
        idempotency,
        estimated_completion,
        callback,
    };
    let done = state.engine.place_order(m, user, order).await?;
    crate::consistency::projected(&state.models, &done).await;
    let (Placed::New(id) | Placed::Replayed(id)) = &done.reply;
    extract::log_ids(None, Some(*id));
    match done.reply {
        Placed::New(order_id) => Ok(HttpResponse::Created().json(json!({
            "order_id": order_id,
            "status": "pending",
            "created_at": m.now,
            "estimated_completion": estimated_completion,
            "user_id": user.to_string(),
            "cost_trx": trx_json(price, 0),
            "cost_sun": price.as_sun(),
        }))),
        Placed::Replayed(order_id) => {
            let view = state
                .models
                .order(&order_id)?
                .ok_or_else(|| ApiError::internal("replayed order missing"))?;
            Ok(HttpResponse::Ok()
                .insert_header(("Idempotent-Replayed", "true"))
                .json(json!({
                    "order_id": order_id,
                    "status": view.status.as_str(),
                    "created_at": view.created_at,
                    "estimated_completion": view.estimated_completion,
                    "user_id": user.to_string(),
                    "cost_trx": trx_json(view.price, 0),
                    "cost_sun": view.price.as_sun(),
                })))
        }
    }
}

pub fn pricing_error(state: &AppState, e: crate::domain::pricing::PricingError) -> ApiError {
    use crate::domain::pricing::PricingError::*;
    match e {
        DurationNotOffered(d) => {
            let offered: Vec<&str> = state.prices.durations().map(|(d, _)| d).collect();
            ApiError::bad_request(
                "duration_not_offered",
                format!("不提供该租用时长: {d}"),
                format!("duration {d} is not offered"),
            )
            .with("allowed_durations", json!(offered))
        }
        EnergyOutOfBounds { min, max } => ApiError::bad_request(
            "energy_out_of_range",
            format!("能量数量必须在 {min} 到 {max} 之间"),
            format!("energy_amount must be between {min} and {max}"),
        )
        .with("min_energy", json!(min))
        .with("max_energy", json!(max)),
        Overflow | BadEntry(_) => ApiError::bad_request(
            "invalid_energy_amount",
            "能量数量无效",
            "invalid energy amount",
        ),
    }
}

#[utoipa::path(
    get,
    path = "/api/orders/{order_id}",
    tag = "orders",
    params(("order_id" = crate::http::openapi::OrderIdParam, Path)),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The order", body = crate::http::openapi::Order),
        (status = 400, description = "invalid_order_id"),
        (status = 403, description = "forbidden_user"),
        (status = 404, description = "order_not_found"),
    ),
)]
pub async fn get(client: Client, state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let id = extract::order_id(&path)?;
    if let Grant::User(_) = client.grant {
        // Only a user key is bound to an owner; everyone else reads the stored body as is.
        if let Some(o) = state.models.order(&id)? {
            client.acts_for(o.user_id)?;
        }
    }
    // Served as stored: the read model keeps the order in the API's shape.
    match state.models.order_body(&id)? {
        Some(o) => Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(web::Bytes::from_owner(o))),
        None => Err(crate::domain::DomainError::OrderNotFound(id).into()),
    }
}

const STATUSES: [&str; 5] = ["pending", "processing", "completed", "failed", "refunded"];

#[utoipa::path(
    get,
    path = "/api/users/{user_id}/orders",
    tag = "orders",
    params(
        ("user_id" = crate::http::openapi::UserIdParam, Path),
        ("status" = Option<crate::http::openapi::OrderStatusParam>, Query, description = "Only orders in this status"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Orders per page, default 20"),
        ("after" = Option<crate::http::openapi::OrderIdParam>, Query, description = "`next_after` of the previous page"),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Newest first", body = crate::http::openapi::OrderPage),
        (status = 400, description = "invalid_user_id, invalid_status, invalid_order_id, invalid_field"),
        (status = 403, description = "forbidden_user"),
    ),
)]
pub async fn list_for_user(
    client: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let q = QueryParams::parse(&req)?;
    let status = q.get("status");
    if let Some(s) = status.filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::bad_request(
            "invalid_status",
            format!("无效的订单状态: {s}"),
            format!("invalid status: {s}"),
        )
        .with("allowed_statuses", json!(STATUSES)));
    }
    let after = q.get("after").map(extract::order_id).transpose()?;
    let limit = q.integer("limit", 1..=200)?.unwrap_or(20) as usize;
    let orders =
        state
            .models
            .user_orders(user, status.and_then(OrderStatus::parse), after, limit)?;
    let next = (orders.len() == limit)
        .then(|| orders.last().map(|(id, _)| *id))
        .flatten();
    // The page is written around the stored bodies, which go out as they are.
    let mut page = Vec::with_capacity(
        64 + orders
            .iter()
            .map(|(_, o)| o.body().len() + 1)
            .sum::<usize>(),
    );
    page.extend_from_slice(b"{\"user_id\":");
    serde_json::to_writer(&mut page, &user.to_string()).expect("a string serializes");
    page.extend_from_slice(b",\"orders\":[");
    for (i, (_, o)) in orders.iter().enumerate() {
        if i > 0 {
            page.push(b',');
        }
        page.extend_from_slice(o.body());
    }
    page.extend_from_slice(b"],\"next_after\":");
    serde_json::to_writer(&mut page, &next).expect("an order id serializes");
    page.push(b'}');
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(page))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Deduct {
    /// The order's price, exactly.
    #[schema(schema_with = field::trx_amount)]
    amount: Box<RawValue>,
    #[schema(schema_with = field::order_id)]
    order_id: String,
    #[serde(default)]
    #[schema(schema_with = field::reason_or_null)]
    reason: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/users/{user_id}/deduct",
    tag = "orders",
    params(("user_id" = crate::http::openapi::UserIdParam, Path)),
    request_body = Deduct,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Deducted, or already paid (idempotent per order)", body = crate::http::openapi::Deducted),
        (status = 400, description = "invalid_user_id, invalid_amount, invalid_order_id, invalid_reason"),
        (status = 402, description = "insufficient_balance"),
        (status = 403, description = "forbidden_user, order_not_owned"),
        (status = 404, description = "order_not_found"),
        (status = 409, description = "amount_mismatch"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn deduct(
    client: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    let user = extract::user_id(&path)?;
    client.acts_for(user)?;
    let b: Deduct = extract::json_body(&body)?;
    let amount = extract::trx_amount("amount", &b.amount)?;
    let order_id = extract::order_id(&b.order_id)?;
    if let Some(r) = b.reason.as_deref().filter(|r| *r != "energy_purchase") {
        return Err(ApiError::bad_request(
            "invalid_reason",
            format!("不支持的扣款原因: {r}"),
            format!("unsupported reason: {r}"),
        )
        .with("allowed_reasons", json!(["energy_purchase"])));
    }
    // Orders live in their owner's partition, so another user's writer cannot see them:
    // tell "not yours" apart from "does not exist" here.
    if let Some(o) = state.models.order(&order_id)?.filter(|o| o.user_id != user) {
        return Err(crate::domain::DomainError::OrderNotOwned(o.order_id).into());
    }
    let done = state
        .engine
        .deduct(meta(&req), user, order_id, amount)
        .await?;
    crate::consistency::projected(&state.models, &done).await;
    let balance = state
        .models
        .balance(user)?
        .map(|b| b.balance)
        .unwrap_or_default();
    let (status, zh, en) = if done.reply {
        ("deducted", "扣款成功", "deducted")
    } else {
        (
            "already_deducted",
            "该订单已扣款，本次未重复扣款",
            "this order was already paid; nothing was deducted again",
        )
    };
    Ok(HttpResponse::Ok().json(json!({
        "order_id": order_id,
        "user_id": user.to_string(),
        "amount": trx_json(amount, 0),
        "status": status,
        "deducted": done.reply,
        "message": if req.headers().get("accept-language").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("en")) { en } else { zh },
        "balance_trx": trx_json(balance, 6),
    })))
}
