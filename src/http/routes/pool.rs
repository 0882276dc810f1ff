//! The wallet pool as clients and operators see it (seed §5, §6) and price quotes.

use super::orders::{pricing_error, render};
use super::{meta, Reply};
use crate::domain::account::PlaceOrder;
use crate::domain::pool::best_fit;
use crate::http::error::{trx_json, ApiError};
use crate::http::extract::{self, Admin, Client, QueryParams};
use crate::http::openapi::field;
use crate::http::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_events::{EnergyAmount, OrderId, OrderKind, OrderStatus, RentalDuration, UserId};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};
use std::time::Duration;

/// Best fit over the read model: the same rule the pool's writer applies when it reserves.
fn availability(state: &AppState, energy: EnergyAmount) -> Result<Value, ApiError> {
    let wallets = state.models.pool_wallets()?;
    let choice = best_fit(wallets.iter().map(|w| (w.address, w.available())), energy);
    let largest = wallets.iter().map(|w| w.available()).max().unwrap_or(0);
    Ok(match choice {
        Some((wallet, available)) => {
            json!({"available": true, "selected_wallet": wallet, "available_energy": available})
        }
        None => json!({"available": false, "selected_wallet": null, "available_energy": largest}),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Check {
    #[schema(schema_with = field::energy)]
    energy_amount: Box<RawValue>,
    #[schema(schema_with = field::duration)]
    duration: String,
}

#[utoipa::path(
    post,
    path = "/api/wallet-pool/check-availability",
    tag = "wallet pool",
    request_body = Check,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "Whether a supplier wallet has the energy now", body = crate::http::openapi::Availability),
        (status = 400, description = "invalid_energy_amount, invalid_duration"),
    ),
)]
pub async fn check_availability(_: Client, state: web::Data<AppState>, body: web::Bytes) -> Reply {
    let b: Check = extract::json_body(&body)?;
    let energy = extract::energy_field(&b.energy_amount)?;
    extract::duration(&b.duration)?;
    Ok(HttpResponse::Ok().json(availability(&state, energy)?))
}

#[utoipa::path(
    get,
    path = "/api/quote",
    tag = "wallet pool",
    params(
        ("energy_amount" = crate::http::openapi::OrderEnergyParam, Query),
        ("duration" = crate::http::openapi::OfferedDurationParam, Query),
    ),
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "The price and whether the pool has the energy now", body = crate::http::openapi::Quote),
        (status = 400, description = "invalid_energy_amount, invalid_duration, duration_not_offered, energy_out_of_range, invalid_field"),
    ),
)]
pub async fn quote(_: Client, req: HttpRequest, state: web::Data<AppState>) -> Reply {
    let q = QueryParams::parse(&req)?;
    let energy = extract::energy(
        q.get("energy_amount")
            .filter(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|e| e.parse().ok())
            .unwrap_or(0),
    )?;
    let duration = extract::duration(q.get("duration").unwrap_or(""))?;
    let price = state
        .prices
        .quote(energy, duration)
        .map_err(|e| pricing_error(&state, e))?;
    let mut body = availability(&state, energy)?;
    let obj = body.as_object_mut().expect("availability is an object");
    obj.insert("energy_amount".into(), json!(energy));
    obj.insert("duration".into(), json!(duration));
    obj.insert("cost_trx".into(), trx_json(price, 0));
    obj.insert("cost_sun".into(), json!(price.as_sun()));
    obj.insert(
        "durations".into(),
        json!(state
            .prices
            .durations()
            .map(|(d, p)| json!({"duration": d, "sun_per_energy": p}))
            .collect::<Vec<_>>()),
    );
    obj.insert("min_energy".into(), json!(state.prices.min_energy));
    obj.insert("max_energy".into(), json!(state.prices.max_energy));
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Delegate {
    /// A registered supplier wallet.
    #[schema(schema_with = field::address)]
    from_address: String,
    #[schema(schema_with = field::address)]
    to_address: String,
    #[schema(schema_with = field::energy)]
    energy_amount: Box<RawValue>,
    #[schema(schema_with = field::duration_hours)]
    duration_hours: Box<RawValue>,
}

/// The operator's manual delegation: an unpaid order pinned to the chosen supplier wallet,
/// taken by the same saga as every order (so exactly one delegation, reclaimed at the end).
#[utoipa::path(
    post,
    path = "/api/wallet-pool/delegate-energy",
    tag = "wallet pool",
    request_body = Delegate,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Broadcast (or confirmed)", body = crate::http::openapi::Delegation),
        (status = 202, description = "Accepted, still being signed", body = crate::http::openapi::Delegation),
        (status = 400, description = "invalid_wallet_address, invalid_energy_amount, invalid_duration"),
        (status = 404, description = "supplier_wallet_not_found"),
        (status = 409, description = "insufficient_pool_energy, delegation_failed"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn delegate_energy(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Reply {
    let b: Delegate = extract::json_body(&body)?;
    let from = extract::address("from_address", &b.from_address)?;
    let to = extract::address("to_address", &b.to_address)?;
    let energy = extract::energy_field(&b.energy_amount)?;
    let duration = extract::integer_field(&b.duration_hours, 1..=9999)
        .and_then(|h| u32::try_from(h).ok())
        .and_then(|h| RentalDuration::from_hours(h).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_duration",
                "duration_hours 必须是 1 到 9999 的整数",
                "duration_hours must be an integer from 1 to 9999",
            )
        })?;
    let wallet = state
        .models
        .pool_wallets()?
        .into_iter()
        .find(|w| w.address == from)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "supplier_wallet_not_found",
                format!("供应商钱包 {from} 未注册"),
                format!("supplier wallet {from} is not registered"),
            )
        })?;
    if wallet.available() < energy.get() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_pool_energy",
            format!(
                "供应商钱包能量不足：可用 {}，需要 {}",
                wallet.available(),
                energy
            ),
            format!(
                "supplier wallet has {} energy available, {} requested",
                wallet.available(),
                energy
            ),
        )
        .with("available_energy", json!(wallet.available())));
    }
    let m = meta(&req);
    let estimated =
        m.now + chrono::Duration::from_std(state.chain.expected_confirmation()).unwrap_or_default();
    let order_id = OrderId::new_v7();
    let order = PlaceOrder {
        order_id,
        kind: OrderKind::Manual,
        energy,
        duration,
        receive_address: to,
        price: flashrent_events::Sun::ZERO,
        pinned_wallet: Some(from),
        idempotency: None,
        estimated_completion: estimated,
        callback: Default::default(),
    };
    state.engine.place_order(m, UserId::OPERATOR, order).await?;
    // The saga signs, records and broadcasts; answer once the delegation is confirmed
    // (broadcasts are not recorded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(o) = state.models.order(&order_id)? {
            if let Some(hash) = o.transaction_hash {
                return Ok(HttpResponse::Ok().json(json!({
                    "transaction_hash": hash,
                    "status": "confirmed",
                    "estimated_confirmation": estimated,
                    "order_id": order_id,
                })));
            }
            if o.status == OrderStatus::Failed {
                // A refusal for what the wallets or the chain are (no key for the supplier
                // wallet, its resources, a receiver the chain does not know): the outcome
                // of this request in that state. The saga retries transport failures, which
                // never end here.
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "delegation_failed",
                    "能量委托失败",
                    "the delegation failed",
                )
                .with("order", render(&o)));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Ok(HttpResponse::Accepted().json(json!({
                "transaction_hash": null,
                "status": "pending",
                "estimated_confirmation": estimated,
                "order_id": order_id,
            })));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
