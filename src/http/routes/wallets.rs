//! A user's receiving wallets (seed §1).

use super::{meta, Reply};
use crate::http::error::ApiError;
use crate::http::extract::{self, Client};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_projections::WalletView;
use serde::Deserialize;
use serde_json::json;

fn render(w: &WalletView) -> serde_json::Value {
    json!({"id": w.id, "wallet_address": w.wallet_address, "created_at": w.created_at})
}

pub async fn list(_: Client, state: web::Data<AppState>, path: web::Path<String>) -> Reply {
    let user = extract::user_id(&path)?;
    let wallets = state.models.wallets(user)?;
    Ok(HttpResponse::Ok().json(json!({"wallets": wallets.iter().map(render).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
struct AddWallet {
    wallet_address: String,
}

pub async fn add(
    _: Client,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Reply {
    let user = extract::user_id(&path)?;
    let b: AddWallet = extract::json_body(&body)?;
    let address = extract::address("wallet_address", &b.wallet_address)?;
    let done = state.engine.add_wallet(meta(&req), user, address).await?;
    crate::consistency::projected(&state.models, &done).await;
    let wallet = state
        .models
        .wallets(user)?
        .into_iter()
        .find(|w| w.wallet_address == address)
        .ok_or_else(|| ApiError::internal("added wallet missing from the read model"))?;
    Ok(HttpResponse::Created().json(render(&wallet)))
}
