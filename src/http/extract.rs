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

/// A user id exactly as the document states it (`^[1-9][0-9]{0,18}$`): the canonical
/// decimal, without spaces or leading zeros, so one user has one spelling.
pub fn user_id(text: &str) -> Result<UserId, ApiError> {
    let parsed = UserId::parse(text).ok().filter(|u| u.to_string() == text);
    if let Some(u) = parsed {
        log_ids(Some(u), None);
    }
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_user_id",
            format!("用户ID格式无效: {text}"),
            format!("invalid user id: {text}"),
        )
    })
}

/// A user id given in a JSON body: a string as [`user_id`] reads it, or an integer (any
/// spelling JSON has for one: `123`, `123.0`, `1.23e2`).
pub fn user_field(raw: &RawValue) -> Result<UserId, ApiError> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|_| bad_user_id(text))?;
        return user_id(&s);
    }
    let parsed = json_units(text, 0)
        .ok()
        .and_then(|n| UserId::from_number(n).ok());
    if let Some(u) = parsed {
        log_ids(Some(u), None);
    }
    parsed.ok_or_else(|| bad_user_id(text))
}

fn bad_user_id(text: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_user_id",
        format!("用户ID格式无效: {text}"),
        format!("invalid user id: {text}"),
    )
}

/// An order id in the hyphenated form of a UUID (any case), the one form the document
/// states (`format: uuid`).
pub fn order_id(text: &str) -> Result<OrderId, ApiError> {
    let parsed = OrderId::parse(text)
        .ok()
        .filter(|_| is_hyphenated_uuid(text));
    if let Some(o) = parsed {
        log_ids(None, Some(o));
    }
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_order_id",
            format!("订单ID格式无效: {text}"),
            format!("invalid order id: {text}"),
        )
    })
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits: the `uuid` crate also reads the
/// simple, braced and URN forms, which the document does not admit.
pub fn is_hyphenated_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A TRON address exactly as given: Base58Check of 21 bytes starting 0x41 (34 characters
/// starting `T`), without surrounding spaces.
pub fn address(field: &str, text: &str) -> Result<TronAddress, ApiError> {
    let bad = |why: String| {
        ApiError::bad_request(
            "invalid_wallet_address",
            format!("无效的TRON地址: {text}"),
            format!("invalid TRON address in {field}: {why}"),
        )
        .with("field", field.into())
    };
    let address = TronAddress::parse(text).map_err(|e| bad(e.to_string()))?;
    if address.to_string() != text {
        return Err(bad("surrounding spaces".into()));
    }
    Ok(address)
}

/// A well-formed duration in its one spelling (`^[1-9][0-9]{0,3}[mhd]$`: `1h`, not `01h`
/// nor ` 1h`), so what is checked against the price table is what the client wrote.
pub fn duration(text: &str) -> Result<RentalDuration, ApiError> {
    RentalDuration::parse(text)
        .ok()
        .filter(|d| d.to_string() == text)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_duration",
                format!("无效的租用时长: {text}"),
                format!("invalid duration: {text} (e.g. \"1h\")"),
            )
        })
}

/// An order's optional `callback_url` and `out_trade_no`.
///
/// `callback_url`: `http://` or `https://` (scheme in any case) and 1 to 2040 visible ASCII
/// characters (the document's pattern), which parse as a URL with a host (WHATWG) of at most
/// 2048 bytes once normalized, not naming a loopback, private or link-local target unless
/// `allow_private` (the `callback-url` format). Non-ASCII hosts and paths are given
/// punycoded and percent-encoded. Names are not resolved here: the notifier checks where a
/// name leads when it delivers.
///
/// `out_trade_no`: 1 to 64 visible ASCII characters.
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
            let url = Some(u)
                .filter(|u| callback_url_shape(u))
                .and_then(|u| CallbackUrl::parse(u).ok())
                .ok_or_else(|| {
                    bad(
                        "callback_url",
                        "callback_url 必须是 http(s) 绝对地址（可见 ASCII 字符，最多 2048 字节）",
                        "callback_url must be an absolute http(s) URL of visible ASCII characters, at most 2048 bytes",
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

/// `^[Hh][Tt][Tt][Pp][Ss]?://[!-~]{1,2040}$`, the document's pattern of a `callback_url`.
pub fn callback_url_shape(text: &str) -> bool {
    let rest = match text.get(..8) {
        Some(p) if p.eq_ignore_ascii_case("https://") => &text[8..],
        _ => match text.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return false,
        },
    };
    (1..=2040).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_graphic())
}

fn bad_energy() -> ApiError {
    ApiError::bad_request(
        "invalid_energy_amount",
        "能量数量必须为正整数",
        "energy_amount must be a positive integer",
    )
}

pub fn energy(units: u64) -> Result<EnergyAmount, ApiError> {
    EnergyAmount::new(units).ok_or_else(bad_energy)
}

/// An energy amount given in a JSON body: an integer from 1 to 2^64 - 1, in any spelling JSON
/// has for one (`65000`, `65000.0`, `6.5e4`); a string, a fraction or anything else is refused.
pub fn energy_field(raw: &RawValue) -> Result<EnergyAmount, ApiError> {
    energy(json_units(raw.get(), 0).map_err(|_| bad_energy())?)
}

/// An integer JSON field within `range`, else `None`.
pub fn integer_field(raw: &RawValue, range: std::ops::RangeInclusive<u64>) -> Option<u64> {
    json_units(raw.get(), 0).ok().filter(|n| range.contains(n))
}

/// TRX amounts are below 10^13 TRX (10^19 SUN, within a u64 with room for sums of them).
pub const TRX_AMOUNT_LIMIT_SUN: u64 = 10_000_000_000_000_000_000;

/// A TRX amount from the JSON text of a number or a string, exactly, above zero and below
/// 10^13 TRX:
/// - a number, in any JSON spelling of a multiple of 0.000001 (`5.85`, `5.850000`, `3e-06`);
/// - a string of decimal digits with at most 6 decimals, no leading zeros nor exponent
///   (`"5.85"`, `"0.5"`).
pub fn trx_amount(field: &str, raw: &RawValue) -> Result<Sun, ApiError> {
    let text = raw.get();
    let bad = |why: String| {
        ApiError::bad_request(
            "invalid_amount",
            format!("金额 {field} 无效: {why}"),
            format!("invalid {field}: {why}"),
        )
        .with("field", field.into())
    };
    let sun = if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !trx_text_shape(&s) {
            return Err(bad(
                "a string amount is decimal digits with at most 6 decimals, no leading zeros"
                    .into(),
            ));
        }
        Sun::parse_trx(&s).map_err(|e| bad(e.to_string()))?
    } else {
        Sun::from_sun(json_units(text, 6).map_err(|e| bad(e.to_string()))?)
    };
    if sun.is_zero() {
        return Err(bad("must be greater than zero".into()));
    }
    if sun.as_sun() >= TRX_AMOUNT_LIMIT_SUN {
        return Err(bad("must be below 10000000000000 TRX".into()));
    }
    Ok(sun)
}

/// The pattern of a TRX amount given as a string: `[1-9][0-9]{0,12}` or `0`, then optionally
/// `.` and 1 to 6 digits; zero refused.
fn trx_text_shape(s: &str) -> bool {
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let whole_ok = digits(whole) && whole.len() <= 13 && (whole == "0" || !whole.starts_with('0'));
    let frac_ok = frac.is_none_or(|f| digits(f) && f.len() <= 6);
    let nonzero = whole != "0" || frac.is_some_and(|f| f.bytes().any(|b| b != b'0'));
    whole_ok && frac_ok && nonzero
}

/// Why a JSON number is not a count of the units asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("not a number")]
    NotANumber,
    #[error("negative")]
    Negative,
    #[error("too precise")]
    TooPrecise,
    #[error("too large")]
    TooLarge,
}

/// The value of a JSON number's text in units of 10^-`scale`, exactly: `Ok(n)` when it is a
/// whole number of them that fits a u64. Every JSON spelling of the value counts the same
/// (`65000`, `65000.0`, `6.5e4`), read as decimal digits, never through a float.
pub fn json_units(text: &str, scale: u32) -> Result<u64, NumberError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (whole, frac) = match mantissa.split_once('.') {
        Some((w, f)) => (w, f),
        None => (mantissa, ""),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) || mantissa.ends_with('.') {
        return Err(NumberError::NotANumber);
    }
    // The exponent saturates: past a million places either way the answer is the same.
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (sign, e) = match e.as_bytes().first() {
                Some(b'-') => (-1, &e[1..]),
                Some(b'+') => (1, &e[1..]),
                _ => (1, e),
            };
            if !digits(e) {
                return Err(NumberError::NotANumber);
            }
            let e = e.trim_start_matches('0');
            sign * if e.len() > 7 {
                10_000_000
            } else {
                e.parse::<i64>().unwrap_or(0)
            }
        }
    };
    // value = significant digits × 10^places
    let all = format!("{whole}{frac}");
    let significant = all.trim_start_matches('0');
    if significant.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err(NumberError::Negative);
    }
    let trimmed = significant.trim_end_matches('0');
    let places = exponent - frac.len() as i64
        + (significant.len() - trimmed.len()) as i64
        + i64::from(scale);
    if places < 0 {
        return Err(NumberError::TooPrecise);
    }
    if trimmed.len() as i64 + places > 20 {
        return Err(NumberError::TooLarge);
    }
    let value = trimmed
        .parse::<u128>()
        .ok()
        .and_then(|d| d.checked_mul(10u128.pow(places as u32)))
        .ok_or(NumberError::TooLarge)?;
    u64::try_from(value).map_err(|_| NumberError::TooLarge)
}

/// `^[!-~](?:[ -~]{0,max-2}[!-~])?$`: 1 to `max` visible ASCII characters, spaces only
/// inside. What references and idempotency keys are, so the same text is the same key with
/// no trimming or normalizing between what a client sent and what is compared.
pub fn visible_ascii(text: &str, max: usize) -> bool {
    let b = text.as_bytes();
    (1..=max).contains(&b.len())
        && b.iter().all(|c| (b' '..=b'~').contains(c))
        && b[0] != b' '
        && b[b.len() - 1] != b' '
}

/// A credit's `reference`: 1 to 128 visible ASCII characters, spaces only inside.
pub fn reference(text: &str) -> Result<String, ApiError> {
    if visible_ascii(text, 128) {
        return Ok(text.to_owned());
    }
    Err(ApiError::bad_request(
        "invalid_reference",
        "reference 必须为 1 到 128 个可见 ASCII 字符（空格只能在中间）",
        "reference must be 1 to 128 visible ASCII characters (spaces only inside)",
    ))
}

/// An `Idempotency-Key` header, if given: 1 to 255 visible ASCII characters, spaces only
/// inside.
pub fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(v) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if visible_ascii(k, 255) => Ok(Some(k.to_owned())),
        _ => Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key 必须是 1 到 255 个可见 ASCII 字符（空格只能在中间）",
            "Idempotency-Key must be 1 to 255 visible ASCII characters (spaces only inside)",
        )),
    }
}

/// An API key's `name`: 1 to 64 characters, no control characters, and neither first nor
/// last a space of any kind (Unicode `White_Space`).
pub fn key_name(text: &str) -> bool {
    let n = text.chars().count();
    (1..=64).contains(&n) && !text.chars().any(char::is_control) && text.trim() == text
}

/// A request's query parameters, each given at most once.
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    pub fn parse(req: &HttpRequest) -> Result<QueryParams, ApiError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_field",
                    format!("查询参数无效: {e}"),
                    format!("invalid query string: {e}"),
                )
            })?
            .into_inner();
        for (i, (name, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("查询参数 {name} 重复"),
                    format!("query parameter {name} is given more than once"),
                )
                .with("field", name.as_str().into()));
            }
        }
        Ok(QueryParams(pairs))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// An integer parameter in decimal digits, within `range`; absent: `None`.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ApiError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let value = Some(text)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|n| range.contains(n));
        match value {
            Some(n) => Ok(Some(n)),
            None => Err(ApiError::bad_request(
                "invalid_field",
                format!(
                    "参数 {name} 必须是 {} 到 {} 的整数",
                    range.start(),
                    range.end()
                ),
                format!(
                    "{name} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
            .with("field", name.into())),
        }
    }
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

/// Whether client routes need a key: one is configured, or one was ever issued.
pub fn keys_required(state: &AppState) -> bool {
    !state.api_keys.is_empty()
        || state.keys_issued.get(|| {
            state.models.any_api_key().unwrap_or_else(|e| {
                // Fails closed: a read model that cannot answer does not open the routes.
                tracing::error!(error = %e, "cannot read the API keys");
                true
            })
        })
}

fn client(req: &HttpRequest, state: &AppState) -> Result<Client, ApiError> {
    let given = req
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| bearer(req));
    if !keys_required(state) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_count_exact_units_whatever_their_spelling() {
        for (text, scale, want) in [
            ("65000", 0, 65_000),
            ("65000.0", 0, 65_000),
            ("6.5e4", 0, 65_000),
            ("6.5E+4", 0, 65_000),
            ("650000e-1", 0, 65_000),
            ("5.85", 6, 5_850_000),
            ("5.850000000", 6, 5_850_000),
            ("3e-06", 6, 3),
            ("1.5e+16", 0, 15_000_000_000_000_000),
            ("18446744073709551615", 0, u64::MAX),
            ("0", 0, 0),
            ("-0.0", 6, 0),
        ] {
            assert_eq!(json_units(text, scale), Ok(want), "{text}");
        }
        for (text, scale, why) in [
            ("650.5", 0, NumberError::TooPrecise),
            ("1e-7", 6, NumberError::TooPrecise),
            ("5.8500001", 6, NumberError::TooPrecise),
            ("1e999999999999", 0, NumberError::TooLarge),
            ("1e-999999999999", 6, NumberError::TooPrecise),
            ("18446744073709551616", 0, NumberError::TooLarge),
            ("-5", 0, NumberError::Negative),
            ("\"5\"", 0, NumberError::NotANumber),
            ("null", 0, NumberError::NotANumber),
            ("true", 0, NumberError::NotANumber),
        ] {
            assert_eq!(json_units(text, scale), Err(why), "{text}");
        }
    }

    #[test]
    fn string_amounts_are_plain_positive_decimals() {
        for ok in [
            "5.85",
            "0.5",
            "0.000001",
            "25",
            "9999999999999.999999",
            "5.850000",
        ] {
            assert!(trx_text_shape(ok), "{ok}");
        }
        for bad in [
            "0",
            "0.0",
            "0.000000",
            "05.85",
            "5.",
            ".5",
            "5.8500001",
            "1e3",
            " 5",
            "10000000000000",
            "-1",
            "",
        ] {
            assert!(!trx_text_shape(bad), "{bad}");
        }
    }

    #[test]
    fn references_and_keys_are_visible_ascii_with_spaces_only_inside() {
        assert!(visible_ascii("deposit-42", 128));
        assert!(visible_ascii("a b", 128));
        assert!(!visible_ascii(" a", 128));
        assert!(!visible_ascii("a ", 128));
        assert!(!visible_ascii("", 128));
        assert!(!visible_ascii("a\tb", 128));
        assert!(!visible_ascii("充值", 128));
        assert!(visible_ascii(&"x".repeat(128), 128));
        assert!(!visible_ascii(&"x".repeat(129), 128));
        assert!(key_name("商店-123"));
        assert!(!key_name(" shop"));
        assert!(!key_name("shop\u{3000}"));
        assert!(!key_name("a\u{7}b"));
        assert!(key_name(&"名".repeat(64)));
        assert!(!key_name(&"名".repeat(65)));
    }

    #[test]
    fn callback_urls_have_the_documented_shape() {
        assert!(callback_url_shape("https://shop.example.com/notify?x=1"));
        assert!(callback_url_shape("HTTP://a"));
        assert!(!callback_url_shape("https://"));
        assert!(!callback_url_shape("ftp://a"));
        assert!(!callback_url_shape("https://a b"));
        assert!(!callback_url_shape("https://例子.com"));
        assert!(callback_url_shape(&format!("https://{}", "a".repeat(2040))));
        assert!(!callback_url_shape(&format!(
            "https://{}",
            "a".repeat(2041)
        )));
    }

    #[test]
    fn ids_are_read_in_their_one_spelling() {
        assert!(user_id("123").is_ok());
        for bad in ["0123", " 123", "123 ", "+123", "0", ""] {
            assert!(user_id(bad).is_err(), "{bad}");
        }
        assert!(order_id("01a20efa-c37a-7274-8ffc-8ff16280159f").is_ok());
        assert!(order_id("01A20EFA-C37A-7274-8FFC-8FF16280159F").is_ok());
        for bad in [
            "01a20efac37a72748ffc8ff16280159f",
            "{01a20efa-c37a-7274-8ffc-8ff16280159f}",
            "urn:uuid:01a20efa-c37a-7274-8ffc-8ff16280159f",
            " 01a20efa-c37a-7274-8ffc-8ff16280159f",
        ] {
            assert!(order_id(bad).is_err(), "{bad}");
        }
        assert!(duration("1h").is_ok());
        for bad in ["01h", " 1h", "1h ", "0h", "10000h"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(address("a", "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").is_ok());
        assert!(address("a", " TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2").is_err());
    }
}
