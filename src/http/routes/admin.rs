//! Operator routes: crediting balances and registering supplier wallets.

use super::{meta, Reply};
use crate::http::error::{trx_json, ApiError};
use crate::http::extract::{self, Admin};
use crate::http::openapi::field;
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_projections::PoolWalletView;
use serde::Deserialize;
use serde_json::{json, value::RawValue};

#[derive(Deserialize, utoipa::ToSchema)]
struct Credit {
    #[schema(schema_with = field::trx_amount)]
    amount_trx: Box<RawValue>,
    /// Makes the credit idempotent per user: the same reference with the same amount
    /// changes nothing again.
    #[schema(schema_with = field::reference)]
    reference: String,
}

/// Credits a balance. The reference (a deposit id, say) makes it idempotent per user.
#[utoipa::path(
    post,
    path = "/api/admin/users/{user_id}/credit",
    tag = "admin",
    params(("user_id" = crate::http::openapi::UserIdParam, Path)),
    request_body = Credit,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Credited", body = crate::http::openapi::Credited),
        (status = 200, description = "This reference was already credited with this amount: nothing changed", body = crate::http::openapi::Credited),
        (status = 400, description = "invalid_user_id, invalid_amount, invalid_reference"),
        (status = 409, description = "credit_reference_conflict, amount_too_large"),
        (status = 503, description = "service_unavailable"),
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
    let amount = extract::trx_amount("amount_trx", &b.amount_trx)?;
    let reference = extract::reference(&b.reference)?;
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
    #[schema(schema_with = field::address)]
    address: String,
    #[schema(schema_with = field::energy)]
    energy_capacity: Box<RawValue>,
}

#[utoipa::path(
    post,
    path = "/api/admin/wallet-pool/wallets",
    tag = "admin",
    request_body = Register,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Registered", body = crate::http::openapi::SupplierWallet),
        (status = 400, description = "invalid_wallet_address, invalid_energy_amount"),
        (status = 409, description = "supplier_wallet_exists"),
        (status = 503, description = "service_unavailable"),
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
    let capacity = extract::energy_field(&b.energy_capacity)?;
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
        (status = 200, description = "Every supplier wallet of the pool", body = crate::http::openapi::SupplierWallets),
    ),
)]
pub async fn list_suppliers(_: Admin, state: web::Data<AppState>) -> Reply {
    let wallets = state.models.pool_wallets()?;
    Ok(HttpResponse::Ok().json(json!({"wallets": wallets.iter().map(render).collect::<Vec<_>>()})))
}
