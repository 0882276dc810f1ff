//! The OpenAPI document served at `/api/openapi.json`, generated with utoipa from the
//! `#[utoipa::path]` attribute on each handler and the request structs the handlers parse
//! (`ToSchema`). Response shapes the handlers build with `json!` are described here.
//! `tests/openapi.rs` checks that every route of the route table is in the document and that
//! every error code the handlers can answer is in [`ErrorCode`].

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: a stable code and a message (Chinese; English with `Accept-Language: en`).
/// Some errors carry more fields (`required_amount`, `current_balance`, `quoted_cost_trx`, `field`, …).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: ErrorCode,
    pub message: String,
}

/// The stable error codes.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ErrorCode {
    InsufficientBalance,
    PriceMismatch,
    DurationNotOffered,
    EnergyOutOfRange,
    InvalidJson,
    InvalidField,
    InvalidCallbackUrl,
    InvalidAmount,
    InvalidUserId,
    InvalidOrderId,
    InvalidWalletAddress,
    InvalidDuration,
    InvalidEnergyAmount,
    InvalidStatus,
    InvalidReference,
    InvalidReason,
    InvalidIdempotencyKey,
    AmountMismatch,
    AmountTooLarge,
    Unauthorized,
    ForbiddenUser,
    RateLimited,
    InvalidKeyId,
    ApiKeyNotFound,
    ApiKeyExists,
    OrderNotOwned,
    OrderNotFound,
    SupplierWalletNotFound,
    NotFound,
    WalletAlreadyExists,
    TooManyWallets,
    CreditReferenceConflict,
    SupplierWalletExists,
    InsufficientPoolEnergy,
    InvalidOrderState,
    DelegationFailed,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    BadRequest,
    InternalError,
    ServiceUnavailable,
}

/// An order as `GET /api/orders/{order_id}` renders it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Order {
    pub order_id: String,
    /// `pending`, `processing`, `completed`, `failed` or `refunded`.
    pub status: String,
    pub user_id: String,
    pub energy_amount: u64,
    pub duration: String,
    pub receive_address: String,
    pub cost_trx: f64,
    pub cost_sun: u64,
    pub transaction_hash: Option<String>,
    pub created_at: String,
    pub completed_at: Option<String>,
    pub estimated_completion: String,
    /// `rental` or `manual`.
    pub kind: String,
    pub paid: bool,
    pub supplier_wallet: Option<String>,
    pub pending_transaction: Option<String>,
    pub block_number: Option<u64>,
    pub failure_reason: Option<String>,
    /// Our own text for `failure_reason` (never a node's answer).
    pub failure_message: Option<String>,
    pub failed_at: Option<String>,
    pub refunded_at: Option<String>,
    pub rental_ends_at: Option<String>,
    pub rental_ended_at: Option<String>,
    pub reclaim_transaction_hash: Option<String>,
    pub updated_at: String,
}

/// The answer to `POST /api/orders`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderCreated {
    pub order_id: String,
    pub status: String,
    pub created_at: String,
    pub estimated_completion: String,
    pub user_id: String,
    pub cost_trx: f64,
    pub cost_sun: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderPage {
    pub user_id: String,
    pub orders: Vec<Order>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Balance {
    pub user_id: u64,
    pub balance_trx: f64,
    pub balance_sun: u64,
    pub last_updated: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerEntry {
    pub seq: u64,
    pub at: String,
    pub delta_sun: i64,
    pub delta_trx: f64,
    pub balance_after_trx: f64,
    pub balance_after_sun: u64,
    /// `credit`, `order_payment` or `refund`.
    pub cause: String,
    pub order_id: Option<String>,
    pub reference: Option<String>,
    pub event_id: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ledger {
    pub user_id: String,
    pub entries: Vec<LedgerEntry>,
    pub next_from: Option<u64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Credited {
    pub user_id: String,
    pub reference: String,
    pub amount_trx: f64,
    /// False when the reference was already credited (nothing changed).
    pub credited: bool,
    pub balance_trx: f64,
    pub balance_sun: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Deducted {
    pub order_id: String,
    pub user_id: String,
    pub amount: f64,
    /// `deducted` or `already_deducted`.
    pub status: String,
    pub deducted: bool,
    pub message: String,
    pub balance_trx: f64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Wallet {
    pub id: u32,
    pub wallet_address: String,
    pub created_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Wallets {
    pub wallets: Vec<Wallet>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Availability {
    pub available: bool,
    pub selected_wallet: Option<String>,
    pub available_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DurationPrice {
    pub duration: String,
    pub sun_per_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Quote {
    pub available: bool,
    pub selected_wallet: Option<String>,
    pub available_energy: u64,
    pub energy_amount: u64,
    pub duration: String,
    pub cost_trx: f64,
    pub cost_sun: u64,
    pub durations: Vec<DurationPrice>,
    pub min_energy: u64,
    pub max_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Delegation {
    pub order_id: String,
    /// `broadcasted`, `completed`, or `pending` (202, still being signed).
    pub status: String,
    pub transaction_hash: Option<String>,
    pub estimated_confirmation: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SupplierWallet {
    pub address: String,
    pub energy_capacity: u64,
    pub reserved_energy: u64,
    pub delegated_energy: u64,
    pub available_energy: u64,
    pub registered_at: String,
    pub updated_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SupplierWallets {
    pub wallets: Vec<SupplierWallet>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Status {
    pub status: String,
}

/// An API key, as issued: `key` is in this answer only, never again.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IssuedKey {
    pub id: String,
    pub key: String,
    /// `user` or `frontend`.
    pub scope: String,
    /// For a user key: the user it acts for.
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub created_at: String,
}

/// An API key as listed: never the key, nor its hash.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyView {
    pub id: String,
    /// `user` or `frontend`.
    pub scope: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub created_at: String,
    /// When an instance last let it in (recorded about once a minute).
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "flashrent", description = "Rent TRON energy: balances, orders, the wallet pool."),
    paths(
        crate::http::routes::health::healthz,
        crate::http::routes::health::readyz,
        crate::http::routes::ops::metrics,
        openapi_json,
        crate::http::routes::wallets::list,
        crate::http::routes::wallets::add,
        crate::http::routes::balance::get,
        crate::http::routes::balance::ledger,
        crate::http::routes::orders::list_for_user,
        crate::http::routes::orders::deduct,
        crate::http::routes::orders::create,
        crate::http::routes::orders::get,
        crate::http::routes::pool::quote,
        crate::http::routes::pool::check_availability,
        crate::http::routes::pool::delegate_energy,
        crate::http::routes::admin::credit,
        crate::http::routes::admin::register_supplier,
        crate::http::routes::admin::list_suppliers,
        crate::http::routes::keys::issue,
        crate::http::routes::keys::list,
        crate::http::routes::keys::revoke,
        crate::http::routes::cluster::partitions,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
