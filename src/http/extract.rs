//! Turning request parts into domain values, once, at the edge.

use super::access::{self, Grant, KeyRef};
use super::error::ApiError;
use super::AppState;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use flashrent_events::{
    CallbackUrl, EnergyAmount, KeyScope, OrderId, RentalDuration, Sun, TronAddress, UserId,
};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use std::future::{ready, Ready};

/// Names the ids a request is about in its log span.
pub fn log_ids(user: Option<UserId>, order: Option<OrderId>) {
    let span = tracing::Span::current();
    if let Some(u) = user {
        span.record("user_id", tracing::field::display(u));
    }
    if let Some(o) = order {
        span.record("order_id", tracing::field::display(o));
    }
}

pub fn user_id(text: &str) -> Result<UserId, ApiError> {
    let parsed = UserId::parse(text);
    if let Ok(u) = parsed {
        log_ids(Some(u), None);
    }
    parsed.map_err(|_| {
        ApiError::bad_request(
            "invalid_user_id",
            format!("用户ID格式无效: {text}"),
            format!("invalid user id: {text}"),
        )
    })
}

pub fn order_id(text: &str) -> Result<OrderId, ApiError> {
    let parsed = OrderId::parse(text);
    if let Ok(o) = parsed {
        log_ids(None, Some(o));
    }
    parsed.map_err(|_| {
        ApiError::bad_request(
            "invalid_order_id",
            format!("订单ID格式无效: {text}"),
            format!("invalid order id: {text}"),
        )
    })
}

pub fn address(field: &str, text: &str) -> Result<TronAddress, ApiError> {
    TronAddress::parse(text).map_err(|e| {
        ApiError::bad_request(
            "invalid_wallet_address",
            format!("无效的TRON地址: {text}"),
            format!("invalid TRON address in {field}: {e}"),
        )
        .with("field", field.into())
    })
}

pub fn duration(text: &str) -> Result<RentalDuration, ApiError> {
    RentalDuration::parse(text).map_err(|_| {
        ApiError::bad_request(
            "invalid_duration",
            format!("无效的租用时长: {text}"),
            format!("invalid duration: {text} (e.g. \"1h\")"),
        )
    })
}

/// An order's optional `callback_url` (absolute http(s) URL with a host, at most 2048 bytes,
/// not naming a loopback, private or link-local target unless `allow_private`) and
/// `out_trade_no` (1 to 64 visible ASCII characters). Names are not resolved here: the
/// notifier checks where a name leads when it delivers.
pub fn order_callback(
    callback_url: Option<&str>,
    out_trade_no: Option<&str>,
    allow_private: bool,
) -> Result<crate::domain::account::OrderCallback, ApiError> {
    let bad = |field: &str, zh: &str, en: &str| {
        ApiError::bad_request("invalid_field", zh.to_owned(), en.to_owned())
            .with("field", field.into())
    };
    let callback_url = match callback_url {
        None => None,
        Some(u) => {
            let url = CallbackUrl::parse(u).map_err(|_| {
                bad(
                    "callback_url",
                    "callback_url 必须是 http(s) 绝对地址",
                    "callback_url must be an absolute http(s) URL of at most 2048 bytes",
                )
            })?;
            if let Some(range) = url.private_target().filter(|_| !allow_private) {
                return Err(ApiError::bad_request(
                    "invalid_callback_url",
                    format!("callback_url 不能指向内网或本机地址（{range}）"),
                    format!("callback_url must not name a {range} address: notifications go only to public hosts"),
                )
                .with("field", "callback_url".into()));
            }
            Some(url)
        }
    };
    let out_trade_no = match out_trade_no {
        None => None,
        Some(t) if !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_graphic()) => {
            Some(t.to_owned())
        }
        Some(_) => {
            return Err(bad(
                "out_trade_no",
                "out_trade_no 必须是 1 到 64 个可见 ASCII 字符",
                "out_trade_no must be 1 to 64 visible ASCII characters",
            ))
        }
    };
    Ok(crate::domain::account::OrderCallback {
        callback_url,
        out_trade_no,
    })
}

pub fn energy(units: u64) -> Result<EnergyAmount, ApiError> {
    EnergyAmount::new(units).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_energy_amount",
            "能量数量必须为正整数",
            "energy_amount must be a positive integer",
        )
    })
}

/// A TRX amount from the JSON text of a number or a string, exactly; zero refused when `positive`.
pub fn trx_amount(field: &str, raw: &RawValue, positive: bool) -> Result<Sun, ApiError> {
    let text = raw.get().trim().trim_matches('"');
    let bad = |why: String| {
        ApiError::bad_request(
            "invalid_amount",
            format!("金额 {field} 无效: {why}"),
            format!("invalid {field}: {why}"),
        )
        .with("field", field.into())
    };
    let sun = Sun::parse_trx(text).map_err(|e| bad(e.to_string()))?;
    if positive && sun.is_zero() {
        return Err(bad("must be greater than zero".into()));
    }
    Ok(sun)
}

/// The JSON body as `T`, with our error shape for every way it can be wrong.
pub fn json_body<T: DeserializeOwned>(body: &web::Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        let (code, zh) = match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ("invalid_json", "请求体不是有效的JSON")
            }
            Category::Data => ("invalid_field", "请求字段缺失或类型错误"),
        };
        ApiError::bad_request(
            code,
            format!("{zh}: {e}"),
            format!("invalid request body: {e}"),
        )
    })
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Compares secrets without an early exit, so timing tells nothing about them.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn unauthorized() -> ApiError {
    ApiError::new(
        actix_web::http::StatusCode::UNAUTHORIZED,
        "unauthorized",
        "缺少或无效的访问令牌",
        "missing or invalid credentials",
    )
}

/// Proof that the request carries the admin token.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req
            .app_data::<web::Data<AppState>>()
            .expect("app state is registered");
        let ok = bearer(req).is_some_and(|t| same_secret(t, state.admin_token.expose()));
        ready(if ok { Ok(Admin) } else { Err(unauthorized()) })
    }
}

/// Proof that the request may use client routes, and for whom. Open while no key is
/// configured or was ever issued; from then on one of them is needed, in `X-API-Key` or as a
/// bearer token: a configured key (`FLASHRENT_API_KEYS`) or an issued front-end key acts for
/// any user, an issued user key for its user only ([`Client::acts_for`]).
pub struct Client {
    pub grant: Grant,
    pub key: Option<KeyRef>,
}

impl Client {
    /// Refuses a user key used for another user: 403 `forbidden_user`.
    pub fn acts_for(&self, user: UserId) -> Result<(), ApiError> {
        match self.grant {
            Grant::User(own) if own != user => Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden_user",
                format!("该 API 密钥无权代表用户 {user} 操作"),
                format!("this API key may not act for user {user}"),
            )),
            _ => Ok(()),
        }
    }
}

impl FromRequest for Client {
    type Error = ApiError;
    type Future = Ready<Result<Client, ApiError>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req
            .app_data::<web::Data<AppState>>()
            .expect("app state is registered");
        ready(client(req, state))
    }
}

fn client(req: &HttpRequest, state: &AppState) -> Result<Client, ApiError> {
    let given = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(req));
    let issued = || {
        state.keys_issued.get(|| {
            state.models.any_api_key().unwrap_or_else(|e| {
                // Fails closed: a read model that cannot answer does not open the routes.
                tracing::error!(error = %e, "cannot read the API keys");
                true
            })
        })
    };
    if state.api_keys.is_empty() && !issued() {
        return Ok(Client {
            grant: Grant::Open,
            key: None,
        });
    }
    let Some(given) = given else {
        return Err(unauthorized());
    };
    if let Some(n) = state
        .api_keys
        .iter()
        .position(|k| same_secret(given, k.expose()))
    {
        return Ok(Client {
            grant: Grant::Frontend,
            key: Some(KeyRef::Configured(n)),
        });
    }
    let key = state
        .models
        .api_key_by_hash(&access::key_hash(given))?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(unauthorized)?;
    state.key_usage.note(key.id, chrono::Utc::now());
    Ok(Client {
        grant: match key.scope {
            KeyScope::Frontend => Grant::Frontend,
            KeyScope::User { user_id } => Grant::User(user_id),
        },
        key: Some(KeyRef::Issued(key.id)),
    })
}
