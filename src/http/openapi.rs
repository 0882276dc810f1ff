//! The OpenAPI document served at `/api/openapi.json`: every rule the server enforces, so a
//! generated client can validate its requests and a fuzzer can tell good input from bad.
//!
//! utoipa generates the paths from the `#[utoipa::path]` attribute on each handler and the
//! objects from the request structs the handlers parse and the response mirrors below
//! (`ToSchema`). The values inside them (ids, addresses, amounts, durations…) are the
//! components of [`value_schemas`], written as JSON Schema because their rules are patterns,
//! bounds and unions utoipa has no words for; each matches its parser in `extract.rs`.
//!
//! Error responses: a handler's attribute names each error status with the codes it can
//! answer there (`description = "code, code"`); [`finish`] adds the statuses every operation
//! of a kind can answer (the body guard's, the credentials', the router's) and turns each
//! into the exact bodies of those codes ([`ERRORS`]). Rules that are configuration (the energy
//! bounds, the offered durations, whether client routes need a key) are written in per
//! request by [`document`].
//!
//! `tests/openapi.rs` checks that every route of the route table is in the document, that
//! every error code the source can answer is in [`ERRORS`] with the status the source gives
//! it, and that the configured bounds are what the document says.

use super::AppState;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use std::sync::OnceLock;
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi, ToSchema};

/// The pattern of a TRX amount given as a JSON string (see `extract::trx_amount`): a whole
/// part without leading zeros below 10^13, at most 6 decimals, not zero.
const TRX_TEXT: &str = "^(?:[1-9][0-9]{0,12}(?:\\.[0-9]{1,6})?|0\\.(?:[1-9][0-9]{0,5}|0[1-9][0-9]{0,4}|00[1-9][0-9]{0,3}|000[1-9][0-9]{0,2}|0000[1-9][0-9]?|00000[1-9]))$";

/// Neither a control character nor a space of any kind (Unicode `White_Space`, what Rust's
/// `trim` removes): the first and last character of an API key's name.
const NAME_EDGE: &str =
    "[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

const TRON_ADDRESS_FORMAT: &str = "Format `tron-address`: the Base58Check text (Bitcoin alphabet, \
    4-byte double-SHA-256 checksum) of 21 bytes whose first is 0x41, which is always 34 \
    characters starting with `T`. The pattern states the alphabet and the length; the checksum \
    cannot be a regular expression, so a text matching the pattern whose checksum is wrong is \
    refused (400 `invalid_wallet_address`). No spaces around it.";

const CALLBACK_URL_FORMAT: &str = "Format `callback-url`: `http://` or `https://` (the scheme in \
    any case) and 1 to 2040 visible ASCII characters (the pattern), which must parse as an \
    absolute URL with a host (WHATWG URL) of at most 2048 bytes once normalized, and must not \
    name `localhost`, a loopback, private, link-local or otherwise reserved IP address \
    (400 `invalid_callback_url`). Non-ASCII host names are given in punycode, other non-ASCII \
    characters percent-encoded.";

/// The value schemas, by component name.
fn value_schemas() -> Vec<(&'static str, Value)> {
    let uuid = json!({
        "type": "string",
        "format": "uuid",
        "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    });
    vec![
        (
            "UserId",
            json!({
                "description": "A user id: a positive decimal number of at most 19 digits, without leading zeros or spaces.",
                "type": "string",
                "pattern": "^[1-9][0-9]{0,18}$",
                "examples": ["123"],
            }),
        ),
        (
            "UserIdValue",
            json!({
                "description": "A user id in a JSON body: the text of a `UserId`, or the same number as a JSON integer.",
                "anyOf": [
                    {"$ref": "#/components/schemas/UserId"},
                    r("UserIdNumber"),
                ],
                "examples": ["123"],
            }),
        ),
        (
            "UserIdNumber",
            json!({"type": "integer", "minimum": 1, "maximum": 9_999_999_999_999_999_999u64}),
        ),
        (
            "Seq",
            json!({"description": "A position in a ledger (its first entry is 1).", "type": "integer", "minimum": 0, "maximum": u64::MAX}),
        ),
        (
            "OrderOwner",
            json!({
                "description": "Whose order it is: a user id, or `operator` for a manual delegation.",
                "anyOf": [{"$ref": "#/components/schemas/UserId"}, {"const": "operator"}],
            }),
        ),
        ("Uuid", uuid.clone()),
        (
            "OrderId",
            with(
                &uuid,
                json!({"description": "An order id: a UUID in its hyphenated form (any case)."}),
            ),
        ),
        (
            "ApiKeyId",
            with(
                &uuid,
                json!({"description": "An API key's id: a UUID in its hyphenated form (any case)."}),
            ),
        ),
        (
            "TronAddress",
            json!({
                "description": TRON_ADDRESS_FORMAT,
                "type": "string",
                "format": "tron-address",
                "pattern": "^T[1-9A-HJ-NP-Za-km-z]{33}$",
                "examples": ["TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2"],
            }),
        ),
        (
            "Duration",
            json!({
                "description": "A rental period: 1 to 9999 minutes (`m`), hours (`h`) or days (`d`), without leading zeros.",
                "type": "string",
                "pattern": "^[1-9][0-9]{0,3}[mhd]$",
                "examples": ["1h"],
            }),
        ),
        (
            "OfferedDuration",
            json!({
                "description": "A duration of the price table this server runs with (`--prices`).",
                "type": "string",
                "enum": crate::domain::pricing::PriceTable::default().durations().map(|(d, _)| d).collect::<Vec<_>>(),
            }),
        ),
        (
            "OrderEnergy",
            json!({
                "description": "Energy of an order: within the bounds this server runs with (`--min-energy`, `--max-energy`).",
                "type": "integer",
                "minimum": 10_000,
                "maximum": 10_000_000,
            }),
        ),
        (
            "Energy",
            json!({
                "description": "An amount of energy: a positive integer below 2^64.",
                "type": "integer",
                "minimum": 1,
                "maximum": u64::MAX,
            }),
        ),
        (
            "TrxAmount",
            json!({
                "description": "TRX, exactly (1 TRX = 1,000,000 SUN): above zero and below 10^13 TRX, a whole number of SUN. As a JSON number in any spelling of such a value (`5.85`, `5.850000`, `3e-06`), or as a string of decimal digits with at most 6 decimals and no leading zeros (`\"5.85\"`). Never read through a float.",
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10_000_000_000_000u64, "multipleOf": 0.000001},
                    {"type": "string", "pattern": TRX_TEXT},
                ],
                "examples": [5.85],
            }),
        ),
        (
            "Trx",
            json!({
                "description": "TRX, exactly: a whole number of SUN written in TRX.",
                "type": "number",
                "minimum": 0,
                "multipleOf": 0.000001,
            }),
        ),
        (
            "SignedTrx",
            json!({
                "description": "A change of a balance in TRX, exactly (negative for payments).",
                "type": "number",
                "multipleOf": 0.000001,
            }),
        ),
        (
            "Sun",
            json!({"description": "An amount in SUN.", "type": "integer", "minimum": 0}),
        ),
        (
            "Reference",
            json!({
                "description": "What makes a credit idempotent (a deposit id, say): 1 to 128 visible ASCII characters, spaces only inside.",
                "type": "string",
                "minLength": 1,
                "maxLength": 128,
                "pattern": "^[!-~](?:[ -~]{0,126}[!-~])?$",
                "examples": ["deposit-42"],
            }),
        ),
        (
            "IdempotencyKey",
            json!({
                "description": "1 to 255 visible ASCII characters, spaces only inside.",
                "type": "string",
                "minLength": 1,
                "maxLength": 255,
                "pattern": "^[!-~](?:[ -~]{0,253}[!-~])?$",
                "examples": ["buy-1"],
            }),
        ),
        (
            "CallbackUrl",
            json!({
                "description": CALLBACK_URL_FORMAT,
                "type": "string",
                "format": "callback-url",
                "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[!-~]{1,2040}$",
                "examples": ["https://shop.example.com/flashrent/notify"],
            }),
        ),
        (
            "OutTradeNo",
            json!({
                "description": "The client's own order number, sent back in notifications: 1 to 64 visible ASCII characters.",
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": "^[!-~]{1,64}$",
                "examples": ["shop-order-1"],
            }),
        ),
        (
            "KeyName",
            json!({
                "description": "1 to 64 characters, no control characters, neither first nor last a space of any kind.",
                "type": "string",
                "minLength": 1,
                "maxLength": 64,
                "pattern": format!("^{NAME_EDGE}(?:[^\\x00-\\x1f\\x7f-\\x9f]{{0,62}}{NAME_EDGE})?$"),
                "examples": ["shop-123"],
            }),
        ),
        (
            "DurationHours",
            json!({"description": "Whole hours.", "type": "integer", "minimum": 1, "maximum": 9999}),
        ),
        (
            "TransactionHash",
            json!({"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}),
        ),
        (
            "OrderStatus",
            json!({"type": "string", "enum": ["pending", "processing", "completed", "failed", "refunded"]}),
        ),
        (
            "OrderKind",
            json!({"description": "`rental`: a renter's order; `manual`: an operator's delegation.", "type": "string", "enum": ["rental", "manual"]}),
        ),
        (
            "FailureReason",
            json!({"type": "string", "enum": ["insufficient_pool_energy", "receiver_not_activated", "delegation_failed"]}),
        ),
        (
            "LedgerCause",
            json!({"type": "string", "enum": ["credit", "order_payment", "refund"]}),
        ),
        (
            "KeyScope",
            json!({"type": "string", "enum": ["user", "frontend"]}),
        ),
        (
            "Timestamp",
            json!({"type": "string", "format": "date-time"}),
        ),
        (
            "DeductReason",
            json!({"type": "string", "enum": ["energy_purchase"]}),
        ),
        (
            "IssueKey",
            json!({
                "description": "A user key names the `user_id` it acts for (`scope` `user`, or none); a front-end key has `scope` `frontend` and no `user_id` (it acts for any user).",
                "type": "object",
                "properties": {
                    "user_id": {"anyOf": [r("UserIdValue"), {"type": "null"}]},
                    "scope": {"anyOf": [r("KeyScope"), {"type": "null"}]},
                    "name": {"description": "What the key is for, shown in the list.", "anyOf": [r("KeyName"), {"type": "null"}]},
                },
                "oneOf": [
                    {
                        "title": "user key",
                        "required": ["user_id"],
                        "properties": {"user_id": r("UserIdValue"), "scope": {"enum": ["user", null]}},
                    },
                    {
                        "title": "front-end key",
                        "required": ["scope"],
                        "properties": {"scope": {"const": "frontend"}, "user_id": {"type": "null"}},
                    },
                ],
            }),
        ),
    ]
}

fn with(base: &Value, extra: Value) -> Value {
    let mut v = base.clone();
    if let (Value::Object(v), Value::Object(e)) = (&mut v, extra) {
        v.extend(e);
    }
    v
}

/// One error code: its status, what it means, and the fields its body carries beside
/// `error` and `message`.
pub struct ErrorDoc {
    pub code: &'static str,
    pub status: u16,
    pub about: &'static str,
    /// (field, schema, always there)
    pub fields: fn() -> Vec<(&'static str, Value, bool)>,
    /// Answered with `Retry-After`.
    pub retry_after: bool,
}

fn none() -> Vec<(&'static str, Value, bool)> {
    vec![]
}

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

macro_rules! errors {
    ($($code:literal $status:literal $about:literal $(, fields = $fields:expr)? $(, retry = $retry:literal)?;)*) => {
        /// Every error code a client can see.
        pub const ERRORS: &[ErrorDoc] = &[$(ErrorDoc {
            code: $code,
            status: $status,
            about: $about,
            fields: { #[allow(unused_variables)] let f: fn() -> Vec<(&'static str, Value, bool)> = none; $(let f: fn() -> Vec<(&'static str, Value, bool)> = $fields;)? f },
            retry_after: { #[allow(unused_variables)] let r = false; $(let r = $retry;)? r },
        }),*];
    };
}

errors! {
    "invalid_json" 400 "the body is not JSON";
    "invalid_field" 400 "a field or query parameter is missing, of the wrong type or malformed",
        fields = || vec![("field", json!({"type": "string"}), false)];
    "bad_request" 400 "the request could not be read";
    "invalid_user_id" 400 "not a user id";
    "invalid_order_id" 400 "not an order id";
    "invalid_key_id" 400 "not an API key id";
    "invalid_wallet_address" 400 "not a TRON address",
        fields = || vec![("field", json!({"type": "string"}), true)];
    "invalid_duration" 400 "not a duration";
    "invalid_energy_amount" 400 "not a positive integer amount of energy";
    "invalid_amount" 400 "not a TRX amount above zero and below 10^13 TRX with at most 6 decimals",
        fields = || vec![("field", json!({"type": "string"}), true)];
    "invalid_callback_url" 400 "callback_url names a loopback, private or link-local target",
        fields = || vec![("field", json!({"const": "callback_url"}), true)];
    "invalid_status" 400 "not an order status",
        fields = || vec![("allowed_statuses", json!({"type": "array", "items": r("OrderStatus")}), true)];
    "invalid_reference" 400 "not a credit reference";
    "invalid_reason" 400 "not a deduct reason",
        fields = || vec![("allowed_reasons", json!({"type": "array", "items": r("DeductReason")}), true)];
    "invalid_idempotency_key" 400 "not an idempotency key";
    "duration_not_offered" 400 "the duration is not in the price table",
        fields = || vec![("allowed_durations", json!({"type": "array", "items": {"type": "string"}}), true)];
    "energy_out_of_range" 400 "the energy is outside the order bounds",
        fields = || vec![("min_energy", json!({"type": "integer"}), true), ("max_energy", json!({"type": "integer"}), true)];
    "unauthorized" 401 "missing or wrong credentials";
    "insufficient_balance" 402 "the balance is below the price",
        fields = || vec![("required_amount", r("Trx"), true), ("current_balance", r("Trx"), true)];
    "forbidden_user" 403 "a user's API key used for another user";
    "order_not_owned" 403 "the order belongs to another user";
    "not_found" 404 "no such path";
    "order_not_found" 404 "no such order";
    "api_key_not_found" 404 "no such API key";
    "supplier_wallet_not_found" 404 "the supplier wallet is not registered";
    "method_not_allowed" 405 "the path does not take this method";
    "request_timeout" 408 "the request was not sent in time (the connection is closed)";
    "price_mismatch" 409 "cost_trx differs from the server's price",
        fields = || vec![("quoted_cost_trx", r("Trx"), true), ("quoted_cost_sun", r("Sun"), true)];
    "amount_mismatch" 409 "the amount differs from the order's price",
        fields = || vec![("expected_amount", r("Trx"), true)];
    "amount_too_large" 409 "the balance would exceed what it can hold";
    "wallet_already_exists" 409 "the wallet is already added",
        fields = || vec![("wallet_address", r("TronAddress"), true)];
    "too_many_wallets" 409 "the user has as many wallets as allowed";
    "credit_reference_conflict" 409 "the reference was used for another amount",
        fields = || vec![("credited_amount", r("Trx"), true)];
    "supplier_wallet_exists" 409 "the supplier wallet is already registered";
    "insufficient_pool_energy" 409 "the supplier wallet has less energy available",
        fields = || vec![("available_energy", json!({"type": "integer", "minimum": 0}), true)];
    "invalid_order_state" 409 "the order's state does not allow this";
    "api_key_exists" 409 "this API key exists already";
    "payload_too_large" 413 "the body is over 16 KiB";
    "unsupported_media_type" 415 "the body is not Content-Type: application/json";
    "idempotency_key_reused" 422 "the Idempotency-Key was used for a different request";
    "rate_limited" 429 "more orders than the user's or the key's quota",
        fields = || vec![("retry_after_seconds", json!({"type": "integer", "minimum": 1}), true)],
        retry = true;
    "internal_error" 500 "a fault of the server (never of the request)";
    "delegation_failed" 409 "the delegation was refused (by the chain, or no key for the supplier wallet): the failed order is in `order`",
        fields = || vec![("order", r("Order"), true)];
    "service_unavailable" 503 "the event log cannot take writes now", retry = true;
    "not_ready" 503 "the read models are catching up";
}

pub fn error_doc(code: &str) -> Option<&'static ErrorDoc> {
    ERRORS.iter().find(|e| e.code == code)
}

/// The schemas of struct fields: references to [`value_schemas`], optionally nullable.
pub mod field {
    use super::*;

    fn to(name: &str) -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(name))
    }

    fn or_null(name: &str) -> RefOr<Schema> {
        Schema::AnyOf(
            AnyOfBuilder::new()
                .item(Ref::from_schema_name(name))
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .build(),
        )
        .into()
    }

    macro_rules! refs {
        ($($f:ident => $name:literal;)*) => { $(pub fn $f() -> RefOr<Schema> { to($name) })* };
    }
    macro_rules! nullable {
        ($($f:ident => $name:literal;)*) => { $(pub fn $f() -> RefOr<Schema> { or_null($name) })* };
    }

    refs! {
        user_id => "UserIdValue";
        user_text => "UserId";
        order_owner => "OrderOwner";
        order_id => "OrderId";
        key_id => "ApiKeyId";
        uuid => "Uuid";
        user_number => "UserIdNumber";
        address => "TronAddress";
        duration => "Duration";
        offered_duration => "OfferedDuration";
        order_energy => "OrderEnergy";
        energy => "Energy";
        duration_hours => "DurationHours";
        trx_amount => "TrxAmount";
        trx => "Trx";
        signed_trx => "SignedTrx";
        sun => "Sun";
        reference => "Reference";
        order_status => "OrderStatus";
        order_kind => "OrderKind";
        ledger_cause => "LedgerCause";
        key_scope => "KeyScope";
        timestamp => "Timestamp";
        tx_hash => "TransactionHash";
    }
    nullable! {
        user_id_or_null => "UserIdValue";
        user_text_or_null => "UserId";
        order_id_or_null => "OrderId";
        address_or_null => "TronAddress";
        trx_amount_or_null => "TrxAmount";
        callback_url_or_null => "CallbackUrl";
        out_trade_no_or_null => "OutTradeNo";
        key_name_or_null => "KeyName";
        key_scope_or_null => "KeyScope";
        reason_or_null => "DeductReason";
        timestamp_or_null => "Timestamp";
        tx_hash_or_null => "TransactionHash";
        failure_reason_or_null => "FailureReason";
        reference_or_null => "Reference";
    }
}

/// Names of [`value_schemas`] for parameters (`("user_id" = UserIdParam, Path)`): each is
/// the reference, and [`finish`] writes the schema.
macro_rules! named {
    ($($t:ident => $name:literal;)*) => {$(
        pub struct $t;
        impl utoipa::PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new().into()
            }
        }
        impl ToSchema for $t {
            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }
        }
    )*};
}

named! {
    UserIdParam => "UserId";
    OrderIdParam => "OrderId";
    KeyIdParam => "ApiKeyId";
    OrderEnergyParam => "OrderEnergy";
    OfferedDurationParam => "OfferedDuration";
    OrderStatusParam => "OrderStatus";
    IdempotencyKeyParam => "IdempotencyKey";
    IssueKeyBody => "IssueKey";
    SeqParam => "Seq";
}

/// An order as `GET /api/orders/{order_id}` renders it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Order {
    #[schema(schema_with = field::order_id)]
    pub order_id: String,
    #[schema(schema_with = field::order_status)]
    pub status: String,
    #[schema(schema_with = field::order_owner)]
    pub user_id: String,
    #[schema(schema_with = field::energy)]
    pub energy_amount: u64,
    #[schema(schema_with = field::duration)]
    pub duration: String,
    #[schema(schema_with = field::address)]
    pub receive_address: String,
    #[schema(schema_with = field::trx)]
    pub cost_trx: f64,
    #[schema(schema_with = field::sun)]
    pub cost_sun: u64,
    #[schema(schema_with = field::tx_hash_or_null, required = true)]
    pub transaction_hash: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub created_at: String,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub completed_at: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub estimated_completion: String,
    #[schema(schema_with = field::order_kind)]
    pub kind: String,
    pub paid: bool,
    #[schema(schema_with = field::address_or_null, required = true)]
    pub supplier_wallet: Option<String>,
    #[schema(schema_with = field::tx_hash_or_null, required = true)]
    pub pending_transaction: Option<String>,
    #[schema(required = true, minimum = 0)]
    pub block_number: Option<u64>,
    #[schema(schema_with = field::failure_reason_or_null, required = true)]
    pub failure_reason: Option<String>,
    /// Our own text for `failure_reason` (never a node's answer).
    #[schema(required = true)]
    pub failure_message: Option<String>,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub failed_at: Option<String>,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub refunded_at: Option<String>,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub rental_ends_at: Option<String>,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub rental_ended_at: Option<String>,
    #[schema(schema_with = field::tx_hash_or_null, required = true)]
    pub reclaim_transaction_hash: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub updated_at: String,
}

/// The answer to `POST /api/orders`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderCreated {
    #[schema(schema_with = field::order_id)]
    pub order_id: String,
    /// `pending` when placed; a replay tells the order's status now.
    #[schema(schema_with = field::order_status)]
    pub status: String,
    #[schema(schema_with = field::timestamp)]
    pub created_at: String,
    #[schema(schema_with = field::timestamp)]
    pub estimated_completion: String,
    #[schema(schema_with = field::user_text)]
    pub user_id: String,
    #[schema(schema_with = field::trx)]
    pub cost_trx: f64,
    #[schema(schema_with = field::sun)]
    pub cost_sun: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct OrderPage {
    #[schema(schema_with = field::user_text)]
    pub user_id: String,
    pub orders: Vec<Order>,
    /// Pass as `after` for the next page; null on the last page.
    #[schema(schema_with = field::order_id_or_null, required = true)]
    pub next_after: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Balance {
    /// The user id as a JSON integer (the seed's shape).
    #[schema(schema_with = field::user_number)]
    pub user_id: u64,
    #[schema(schema_with = field::trx)]
    pub balance_trx: f64,
    #[schema(schema_with = field::sun)]
    pub balance_sun: u64,
    /// Null until the first change of the balance.
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub last_updated: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct LedgerEntry {
    #[schema(minimum = 1)]
    pub seq: u64,
    #[schema(schema_with = field::timestamp)]
    pub at: String,
    pub delta_sun: i64,
    #[schema(schema_with = field::signed_trx)]
    pub delta_trx: f64,
    #[schema(schema_with = field::trx)]
    pub balance_after_trx: f64,
    #[schema(schema_with = field::sun)]
    pub balance_after_sun: u64,
    #[schema(schema_with = field::ledger_cause)]
    pub cause: String,
    #[schema(schema_with = field::order_id_or_null, required = true)]
    pub order_id: Option<String>,
    #[schema(schema_with = field::reference_or_null, required = true)]
    pub reference: Option<String>,
    #[schema(schema_with = field::uuid)]
    pub event_id: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ledger {
    #[schema(schema_with = field::user_text)]
    pub user_id: String,
    pub entries: Vec<LedgerEntry>,
    /// Pass as `from` for the next page; null on the last page.
    #[schema(required = true, minimum = 1)]
    pub next_from: Option<u64>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Credited {
    #[schema(schema_with = field::user_text)]
    pub user_id: String,
    #[schema(schema_with = field::reference)]
    pub reference: String,
    #[schema(schema_with = field::trx)]
    pub amount_trx: f64,
    /// False when the reference was already credited (nothing changed).
    pub credited: bool,
    #[schema(schema_with = field::trx)]
    pub balance_trx: f64,
    #[schema(schema_with = field::sun)]
    pub balance_sun: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Deducted {
    #[schema(schema_with = field::order_id)]
    pub order_id: String,
    #[schema(schema_with = field::user_text)]
    pub user_id: String,
    #[schema(schema_with = field::trx)]
    pub amount: f64,
    /// `deducted` or `already_deducted`.
    #[schema(pattern = "^(already_)?deducted$")]
    pub status: String,
    pub deducted: bool,
    pub message: String,
    #[schema(schema_with = field::trx)]
    pub balance_trx: f64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Wallet {
    #[schema(minimum = 1)]
    pub id: u32,
    #[schema(schema_with = field::address)]
    pub wallet_address: String,
    #[schema(schema_with = field::timestamp)]
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
    /// The wallet the pool would take the energy from (best fit); null when none can.
    #[schema(schema_with = field::address_or_null, required = true)]
    pub selected_wallet: Option<String>,
    /// Of the selected wallet, or the largest available when none can.
    #[schema(minimum = 0)]
    pub available_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DurationPrice {
    #[schema(schema_with = field::duration)]
    pub duration: String,
    #[schema(minimum = 0)]
    pub sun_per_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Quote {
    pub available: bool,
    #[schema(schema_with = field::address_or_null, required = true)]
    pub selected_wallet: Option<String>,
    #[schema(minimum = 0)]
    pub available_energy: u64,
    #[schema(schema_with = field::order_energy)]
    pub energy_amount: u64,
    #[schema(schema_with = field::offered_duration)]
    pub duration: String,
    #[schema(schema_with = field::trx)]
    pub cost_trx: f64,
    #[schema(schema_with = field::sun)]
    pub cost_sun: u64,
    pub durations: Vec<DurationPrice>,
    #[schema(minimum = 0)]
    pub min_energy: u64,
    #[schema(minimum = 0)]
    pub max_energy: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Delegation {
    #[schema(schema_with = field::order_id)]
    pub order_id: String,
    /// `broadcasted` or `confirmed` (200); `pending` (202, still being signed).
    #[schema(pattern = "^(broadcasted|confirmed|pending)$")]
    pub status: String,
    #[schema(schema_with = field::tx_hash_or_null, required = true)]
    pub transaction_hash: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub estimated_confirmation: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SupplierWallet {
    #[schema(schema_with = field::address)]
    pub address: String,
    #[schema(minimum = 0)]
    pub energy_capacity: u64,
    #[schema(minimum = 0)]
    pub reserved_energy: u64,
    #[schema(minimum = 0)]
    pub delegated_energy: u64,
    #[schema(minimum = 0)]
    pub available_energy: u64,
    #[schema(schema_with = field::timestamp)]
    pub registered_at: String,
    #[schema(schema_with = field::timestamp)]
    pub updated_at: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SupplierWallets {
    pub wallets: Vec<SupplierWallet>,
}

/// An API key, as issued: `key` is in this answer only, never again.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct IssuedKey {
    #[schema(schema_with = field::key_id)]
    pub id: String,
    #[schema(pattern = "^frk_[0-9a-f]{64}$")]
    pub key: String,
    #[schema(schema_with = field::key_scope)]
    pub scope: String,
    /// For a user key: the user it acts for (absent for a front-end key).
    #[schema(schema_with = field::user_text)]
    pub user_id: Option<String>,
    #[schema(schema_with = field::key_name_or_null, required = true)]
    pub name: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub created_at: String,
}

/// An API key as listed: never the key, nor its hash.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyView {
    #[schema(schema_with = field::key_id)]
    pub id: String,
    #[schema(schema_with = field::key_scope)]
    pub scope: String,
    /// For a user key: the user it acts for (absent for a front-end key).
    #[schema(schema_with = field::user_text)]
    pub user_id: Option<String>,
    #[schema(schema_with = field::key_name_or_null, required = true)]
    pub name: Option<String>,
    #[schema(schema_with = field::timestamp)]
    pub created_at: String,
    /// When an instance last let it in (recorded about once a minute).
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub last_used_at: Option<String>,
    #[schema(schema_with = field::timestamp_or_null, required = true)]
    pub revoked_at: Option<String>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Healthy {
    #[schema(pattern = "^ok$")]
    pub status: String,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Ready {
    #[schema(pattern = "^ready$")]
    pub status: String,
    /// Orders the saga is working on.
    #[schema(minimum = 0)]
    pub saga_in_flight: u64,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PartitionOwner {
    #[schema(minimum = 0)]
    pub partition: u32,
    /// The instance its latest claim names (null before any claim).
    #[schema(required = true)]
    pub owner: Option<String>,
    pub written_here: bool,
}

#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Partitions {
    /// Where this instance takes requests.
    pub instance: String,
    pub partitions: Vec<PartitionOwner>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`FLASHRENT_ADMIN_TOKEN`, or generated in the data dir).",
                    ))
                    .build(),
            ),
        );
        let key = ApiKeyValue::with_description(
            "X-API-Key",
            "An API key: configured (`FLASHRENT_API_KEYS`) or issued (`POST /api/admin/api-keys`). Also taken as `Authorization: Bearer <key>`. Client routes need one once any key exists; until then they are open (the empty requirement).",
        );
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(key)));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "flashrent",
        description = "Rent TRON energy: balances, orders, the wallet pool.\n\nThe document states every rule the server enforces: a request it admits is taken (or answered with a business outcome: 401, 402, 403, 404, 409, 422, 429), one it does not is refused with a 4xx, and every answer has the shape given here for its status. Two string formats are our own: `tron-address` (see `TronAddress`) and `callback-url` (see `CallbackUrl`). Energy bounds, offered durations and whether client routes need a key are those of the server that serves the document.",
    ),
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
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The document as far as it does not depend on the server's configuration.
pub fn base_document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        finish(&mut doc);
        doc
    })
}

/// The document of this server: the base with the rules its configuration sets.
pub fn document(state: &AppState) -> Value {
    let mut doc = base_document().clone();
    let schemas = &mut doc["components"]["schemas"];
    schemas["OrderEnergy"]["minimum"] = json!(state.prices.min_energy);
    schemas["OrderEnergy"]["maximum"] = json!(state.prices.max_energy);
    schemas["OfferedDuration"]["enum"] =
        json!(state.prices.durations().map(|(d, _)| d).collect::<Vec<_>>());
    if state.allow_private_callbacks {
        schemas["CallbackUrl"]["description"] = json!(format!(
            "{CALLBACK_URL_FORMAT} This server runs with `--webhook-allow-private`: private, loopback and link-local targets are taken."
        ));
    }
    if super::extract::keys_required(state) {
        // Client routes need a key now: the open alternative goes.
        for op in operations_mut(&mut doc) {
            if let Some(Value::Array(reqs)) = op.get_mut("security") {
                reqs.retain(|r| r.as_object().is_some_and(|o| !o.is_empty()));
            }
        }
    }
    doc
}

/// The methods a path of the route table takes, for `Allow`; `pattern` as actix names the
/// resource (`/api/users/{user_id}/balance`).
pub fn allowed_methods(pattern: &str) -> Option<String> {
    let item = base_document()["paths"].get(pattern)?.as_object()?;
    let methods: Vec<String> = item
        .keys()
        .filter(|m| HTTP_METHODS.contains(&m.as_str()))
        .map(|m| m.to_ascii_uppercase())
        .collect();
    (!methods.is_empty()).then(|| methods.join(", "))
}

const HTTP_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn operations_mut(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| {
            item.iter_mut()
                .filter(|(m, _)| HTTP_METHODS.contains(&m.as_str()))
                .map(|(_, op)| op)
        })
}

/// Adds the value and error schemas, and writes every error response of every operation.
/// Panics on a code the attributes name that [`ERRORS`] does not have, or at another status:
/// a mistake in the source, which the tests build the document to find.
pub fn finish(doc: &mut Value) {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has schemas");
    for (name, schema) in value_schemas() {
        schemas.insert(name.into(), schema);
    }
    schemas.insert(
        "ErrorCode".into(),
        json!({"type": "string", "enum": ERRORS.iter().map(|e| e.code).collect::<Vec<_>>()}),
    );
    schemas.insert(
        "ErrorBody".into(),
        json!({
            "description": "Every error: a stable code and a message (Chinese; English with `Accept-Language: en`), and for some codes more fields.",
            "type": "object",
            "required": ["error", "message"],
            "properties": {"error": r("ErrorCode"), "message": {"type": "string"}},
        }),
    );
    for e in ERRORS {
        let mut properties = Map::new();
        properties.insert("error".into(), json!({"const": e.code}));
        properties.insert("message".into(), json!({"type": "string"}));
        let mut required = vec![json!("error"), json!("message")];
        for (name, schema, always) in (e.fields)() {
            properties.insert(name.into(), schema);
            if always {
                required.push(json!(name));
            }
        }
        schemas.insert(
            format!("Error.{}", e.code),
            json!({
                "description": format!("`{}` ({}): {}.", e.code, e.status, e.about),
                "x-status": e.status,
                "type": "object",
                "required": required,
                "properties": properties,
            }),
        );
    }
    for (path, item) in doc["paths"].as_object_mut().expect("paths").iter_mut() {
        let has_path_params = path.contains('{');
        for (method, op) in item.as_object_mut().expect("a path item").iter_mut() {
            if HTTP_METHODS.contains(&method.as_str()) {
                error_responses(path, method, has_path_params, op);
                absent_not_null(op);
            }
        }
    }
    strip_width_formats(doc);
}

/// The error responses of one operation: those its attribute names and those of the layers
/// every request of its kind passes.
fn error_responses(path: &str, method: &str, has_path_params: bool, op: &mut Value) {
    let has_body = op.get("requestBody").is_some();
    let secured = op["security"].as_array().is_some_and(|reqs| {
        reqs.iter()
            .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
    });
    let responses = op["responses"]
        .as_object_mut()
        .expect("an operation has responses");
    let mut codes: std::collections::BTreeMap<u16, Vec<&'static str>> = Default::default();
    let mut add = |code: &str| {
        let e = error_doc(code)
            .unwrap_or_else(|| panic!("{method} {path}: {code} is not in openapi::ERRORS"));
        let at = codes.entry(e.status).or_default();
        if !at.contains(&e.code) {
            at.push(e.code);
        }
    };
    let named: Vec<String> = responses
        .keys()
        .filter(|s| s.as_str() >= "400")
        .cloned()
        .collect();
    for status in named {
        let given = responses.remove(&status).expect("listed");
        let list = given["description"].as_str().unwrap_or_default();
        for code in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let e = error_doc(code)
                .unwrap_or_else(|| panic!("{method} {path}: {code} is not in openapi::ERRORS"));
            assert_eq!(
                e.status.to_string(),
                status,
                "{method} {path}: {code} is answered with {}, not {status}",
                e.status
            );
            add(code);
        }
    }
    add("internal_error");
    if has_path_params {
        add("not_found");
    }
    if has_body {
        for code in [
            "invalid_json",
            "invalid_field",
            "bad_request",
            "request_timeout",
            "payload_too_large",
            "unsupported_media_type",
        ] {
            add(code);
        }
    }
    if secured {
        add("unauthorized");
    }
    for (status, list) in codes {
        let docs: Vec<&ErrorDoc> = list.iter().filter_map(|c| error_doc(c)).collect();
        let schema = if docs.len() == 1 {
            r(&format!("Error.{}", docs[0].code))
        } else {
            json!({"oneOf": docs.iter().map(|e| r(&format!("Error.{}", e.code))).collect::<Vec<_>>()})
        };
        let description = docs
            .iter()
            .map(|e| format!("`{}`: {}", e.code, e.about))
            .collect::<Vec<_>>()
            .join("; ");
        let mut response = json!({
            "description": description,
            "content": {"application/json": {"schema": schema}},
        });
        if docs.iter().all(|e| e.retry_after) {
            response["headers"] = json!({"Retry-After": {
                "description": "Seconds to wait before trying again.",
                "required": true,
                "schema": {"type": "integer", "minimum": 1},
            }});
        }
        responses.insert(status.to_string(), response);
    }
}

/// A parameter that is not required is absent, never null: utoipa writes an optional one's
/// schema as "null or …".
fn absent_not_null(op: &mut Value) {
    let Some(Value::Array(params)) = op.get_mut("parameters") else {
        return;
    };
    for p in params {
        let schema = &mut p["schema"];
        for union in ["oneOf", "anyOf"] {
            if let Some(Value::Array(alts)) = schema.get_mut(union) {
                alts.retain(|a| a != &json!({"type": "null"}));
                if alts.len() == 1 {
                    *schema = alts.remove(0);
                }
            }
        }
        if let Some(Value::Array(types)) = schema.get_mut("type") {
            types.retain(|t| t != "null");
            if types.len() == 1 {
                let only = types.remove(0);
                schema["type"] = only;
            }
        }
    }
}

/// utoipa writes `int64`, `int32` and `double` formats from Rust's types; our integers go up
/// to 2^64 - 1, past `int64`, and the numbers are exact decimals, not doubles, so the bounds
/// say what the values are instead.
fn strip_width_formats(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| matches!(f, "int64" | "int32" | "double" | "float"))
            {
                o.remove("format");
            }
            o.values_mut().for_each(strip_width_formats);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_width_formats),
        _ => {}
    }
}

/// The OpenAPI document of this API, with this server's configuration in it.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(document(&state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_builds_and_names_only_known_codes_at_their_status() {
        let doc = base_document();
        assert!(doc["components"]["schemas"]["Error.price_mismatch"].is_object());
        let create = &doc["paths"]["/api/orders"]["post"]["responses"];
        assert!(
            create["409"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .is_some_and(|r| r.ends_with("Error.price_mismatch"))
        );
        assert!(create["429"]["headers"]["Retry-After"].is_object());
        assert_eq!(
            allowed_methods("/api/wallets/users/{user_id}").as_deref(),
            Some("GET, POST")
        );
    }

    #[test]
    fn every_error_code_is_listed_once() {
        let mut codes: Vec<_> = ERRORS.iter().map(|e| e.code).collect();
        codes.sort_unstable();
        let n = codes.len();
        codes.dedup();
        assert_eq!(codes.len(), n);
    }
}
