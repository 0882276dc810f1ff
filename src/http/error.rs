//! Every error a client can see: a stable `error` code, a `message` in Chinese (the seed's
//! language) or English (`Accept-Language: en`), the right status, and any extra fields.
//! Domain refusals are 4xx; system failures are an opaque 5xx with the cause in the log.

use crate::domain::DomainError;
use crate::engine::EngineError;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use flashrent_events::{ErrorChain, Sun};
use serde_json::{json, Map, Value};
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    zh: String,
    en: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        zh: impl Into<String>,
        en: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            zh: zh.into(),
            en: en.into(),
            extra: Map::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(
        code: &'static str,
        zh: impl Into<String>,
        en: impl Into<String>,
    ) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, zh, en)
    }

    pub fn with(mut self, key: &str, value: Value) -> ApiError {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// Sent with `Retry-After: secs`.
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    /// A 500 for a failure of ours: `error` (an error, with the errors under it, or what
    /// went wrong in words) is logged with its whole cause chain, and the client told nothing.
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        let error = error.into();
        tracing::error!(error.cause_chain = %ErrorChain(&*error), "request failed");
        ApiError::server_fault()
    }

    /// A 500 that tells the client nothing of its cause, which is logged where it is known
    /// (for a handler that panicked, by the panic hook).
    pub fn server_fault() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "服务器内部错误，请稍后重试",
            "internal server error, please retry later",
        )
    }

    /// A 503 for a store that cannot be reached now; `error` is logged with its causes.
    pub fn unavailable(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ApiError {
        let error = error.into();
        tracing::warn!(error.cause_chain = %ErrorChain(&*error), "event log unavailable");
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "服务暂时不可用，请稍后重试",
            "service temporarily unavailable, please retry",
        );
        e.retry_after = Some(2);
        e
    }

    pub fn body(&self, english: bool) -> Value {
        let mut body = Map::new();
        body.insert("error".into(), Value::from(self.code));
        body.insert(
            "message".into(),
            Value::from(if english { &self.en } else { &self.zh }.as_str()),
        );
        body.extend(self.extra.clone());
        Value::Object(body)
    }

    pub fn response(&self, english: bool) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            r.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        r.json(self.body(english))
    }

    /// The error for a status actix produced before our code ran (unknown route, wrong method,
    /// oversized body…), in our shape.
    pub fn from_status(status: StatusCode, detail: &str) -> ApiError {
        let (code, zh, en) = match status.as_u16() {
            404 => ("not_found", "请求的资源不存在", "no such resource"),
            405 => (
                "method_not_allowed",
                "不支持该请求方法",
                "method not allowed",
            ),
            408 => (
                "request_timeout",
                "请求发送超时",
                "the request was not sent in time",
            ),
            413 => ("payload_too_large", "请求体过大", "request body too large"),
            415 => (
                "unsupported_media_type",
                "不支持的内容类型",
                "unsupported content type",
            ),
            s if s < 500 => ("bad_request", "请求无效", "bad request"),
            _ => return ApiError::internal(detail.to_owned()),
        };
        ApiError::new(status, code, zh, en)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.en)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        self.response(false)
    }
}

/// TRX as an exact JSON number (`5.85`, `3.50`), never through a float.
pub fn trx_json(sun: Sun, min_decimals: usize) -> Value {
    serde_json::from_str(&sun.trx_text(min_decimals)).expect("decimal text is a JSON number")
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> ApiError {
        use DomainError::*;
        let conflict = StatusCode::CONFLICT;
        match e {
            InsufficientBalance { required, current } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_balance",
                format!(
                    "用户余额不足，当前余额: {} TRX，需要: {} TRX",
                    current.trx_text(2),
                    required.trx_text(2)
                ),
                format!(
                    "insufficient balance: current balance {} TRX, required {} TRX",
                    current.trx_text(2),
                    required.trx_text(2)
                ),
            )
            .with("required_amount", trx_json(required, 2))
            .with("current_balance", trx_json(current, 2)),
            DuplicateWallet(a) => ApiError::new(
                conflict,
                "wallet_already_exists",
                format!("钱包地址 {a} 已添加"),
                format!("wallet {a} is already added"),
            )
            .with("wallet_address", json!(a.to_string())),
            TooManyWallets(n) => ApiError::new(
                conflict,
                "too_many_wallets",
                format!("每个用户最多绑定 {n} 个钱包"),
                format!("a user can bind at most {n} wallets"),
            ),
            CreditReferenceConflict { reference, amount } => ApiError::new(
                conflict,
                "credit_reference_conflict",
                format!("充值凭证 {reference} 已用于金额 {} TRX", amount.trx_text(2)),
                format!(
                    "reference {reference} was already used for {} TRX",
                    amount.trx_text(2)
                ),
            )
            .with("credited_amount", trx_json(amount, 0)),
            IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "该 Idempotency-Key 已用于另一个不同的请求",
                "this Idempotency-Key was used for a different request",
            ),
            OrderNotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "order_not_found",
                format!("订单 {id} 不存在"),
                format!("order {id} does not exist"),
            ),
            OrderNotOwned(id) => ApiError::new(
                StatusCode::FORBIDDEN,
                "order_not_owned",
                format!("订单 {id} 不属于该用户"),
                format!("order {id} belongs to another user"),
            ),
            // Well-formed, and refused only for what the order is: a conflict with state.
            AmountMismatch { expected, given } => ApiError::new(
                conflict,
                "amount_mismatch",
                format!(
                    "扣款金额 {} TRX 与订单金额 {} TRX 不符",
                    given.trx_text(2),
                    expected.trx_text(2)
                ),
                format!(
                    "amount {} TRX does not match the order's {} TRX",
                    given.trx_text(2),
                    expected.trx_text(2)
                ),
            )
            .with("expected_amount", trx_json(expected, 0)),
            SupplierWalletExists(a) => ApiError::new(
                conflict,
                "supplier_wallet_exists",
                format!("供应商钱包 {a} 已注册"),
                format!("supplier wallet {a} is already registered"),
            ),
            InvalidTransition { .. } => ApiError::new(
                conflict,
                "invalid_order_state",
                "订单当前状态不允许该操作",
                "the order's state does not allow this",
            ),
            // A valid amount the balance cannot take on top of what it holds.
            Overflow => ApiError::new(
                conflict,
                "amount_too_large",
                "余额将超出上限",
                "the balance would exceed what it can hold",
            ),
            ApiKeyNotFound(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "api_key_not_found",
                format!("API 密钥 {id} 不存在"),
                format!("API key {id} does not exist"),
            ),
            ApiKeyExists => ApiError::new(
                conflict,
                "api_key_exists",
                "该 API 密钥已存在",
                "this API key exists already",
            ),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::Domain(d) => d.into(),
            // Whatever is wrong with the log is not the client's doing, and retrying later
            // is the answer: unreachable, fenced out, or refusing to decide on lost records.
            EngineError::Log(flashrent_events::LogError::Fenced(p)) => {
                ApiError::unavailable(format!("partition {p} is written elsewhere"))
            }
            EngineError::Log(e) => ApiError::unavailable(e),
            EngineError::Stopped => ApiError::unavailable("engine stopping"),
            e @ EngineError::UnexpectedReply(_) => ApiError::internal(e),
        }
    }
}

impl From<flashrent_projections::StoreError> for ApiError {
    fn from(e: flashrent_projections::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading the order")]
    struct Reading(#[source] std::io::Error);

    #[test]
    fn an_internal_error_logs_its_whole_cause_chain_and_tells_the_client_nothing_of_it() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let cause = std::io::Error::other("the disk is gone");
        let e =
            tracing::subscriber::with_default(subscriber, || ApiError::internal(Reading(cause)));
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains("error.cause_chain=reading the order: the disk is gone"),
            "{logged}"
        );
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body(true).to_string().contains("disk"));
    }
}
