//! Operator routes: crediting balances and registering supplier wallets.

use super::orders::energy_field;
use super::{meta, Reply};
use crate::http::error::{trx_json, ApiError};
use crate::http::extract::{self, Admin};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_projections::PoolWalletView;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

#[derive(Deserialize, utoipa::ToSchema)]
struct Credit {
    #[schema(value_type = f64)]
    amount_trx: Box<RawValue>,
    reference: String,
}

/// Credits a balance. The reference (a deposit id, say) makes it idempotent per user.
#[utoipa::path(
    post,
    path = "/api/admin/users/{user_id}/credit",
    tag = "admin",
    params(("user_id" = String, Path, description = "A user id: a positive decimal number")),
    request_body = Credit,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Credited", body = crate::http::openapi::Credited),
        (status = 200, description = "This reference was already credited", body = crate::http::openapi::Credited),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "credit_reference_conflict", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "payload_too_large: body over 16 KiB", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "service_unavailable: the event log cannot take writes (Retry-After)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn credit(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    let user = extract::user_id(&path)?;
    let b: Credit = extract::json_body(&body)?;
    let amount = extract::trx_amount("amount_trx", &b.amount_trx, true)?;
    let reference = b.reference.trim().to_owned();
    if reference.is_empty() || reference.len() > 128 {
        return Err(ApiError::bad_request(
            "invalid_reference",
            "reference 必须为 1 到 128 个字符",
            "reference must be 1 to 128 characters",
        ));
    }
    let done = state
        .engine
        .credit(meta(&req), user, amount, reference.clone())
        .await?;
    crate::consistency::projected(&state.models, &done).await;
    let credited = done.offset.is_some();
    let status = if credited {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(json!({
        "user_id": user.to_string(),
        "reference": reference,
        "amount_trx": trx_json(amount, 0),
        "credited": credited,
        "balance_trx": trx_json(done.reply, 6),
        "balance_sun": done.reply.as_sun(),
    })))
}

fn render(w: &PoolWalletView) -> serde_json::Value {
    json!({
        "address": w.address,
        "energy_capacity": w.energy_capacity,
        "reserved_energy": w.reserved,
        "delegated_energy": w.delegated,
        "available_energy": w.available(),
        "registered_at": w.registered_at,
        "updated_at": w.updated_at,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Register {
    address: String,
    #[schema(value_type = u64)]
    energy_capacity: serde_json::Value,
}

#[utoipa::path(
    post,
    path = "/api/admin/wallet-pool/wallets",
    tag = "admin",
    request_body = Register,
    security(("admin_token" = [])),
    responses(
        (status = 201, body = crate::http::openapi::SupplierWallet),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_* codes)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
        (status = 409, description = "supplier_wallet_exists", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "payload_too_large: body over 16 KiB", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "service_unavailable: the event log cannot take writes (Retry-After)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn register_supplier(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Reply {
    let b: Register = extract::json_body(&body)?;
    let address = extract::address("address", &b.address)?;
    let capacity = energy_field(&b.energy_capacity)?;
    let done = state
        .engine
        .register_supplier(meta(&req), address, capacity)
        .await?;
    crate::consistency::projected(&state.models, &done).await;
    let view = state
        .models
        .pool_wallets()?
        .into_iter()
        .find(|w| w.address == address)
        .ok_or_else(|| ApiError::internal("registered wallet missing"))?;
    Ok(HttpResponse::Created().json(render(&view)))
}

#[utoipa::path(
    get,
    path = "/api/admin/wallet-pool/wallets",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, body = crate::http::openapi::SupplierWallets),
        (status = 401, description = "unauthorized: missing or wrong admin token / API key", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn list_suppliers(_: Admin, state: web::Data<AppState>) -> Reply {
    let wallets = state.models.pool_wallets()?;
    Ok(HttpResponse::Ok().json(json!({"wallets": wallets.iter().map(render).collect::<Vec<_>>()})))
}
