//! What every request goes through before its handler: its body is JSON, small, and sent in
//! time; and a handler that panics answers a 500 in our shape instead of dropping the
//! connection.

use super::error::ApiError;
use super::{AppState, MAX_BODY_BYTES};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::web::{self, BytesMut};
use actix_web::HttpMessage;
use futures_util::{FutureExt, StreamExt};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

/// How long a client may take to send a request's head or its body, unless configured.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the body of a request that has one, whole, before anything else sees it:
/// - it must be `application/json` (415 otherwise): a browser sends `text/plain` or a form
///   across sites without a CORS preflight, and JSON read from those would let any web page
///   place orders with a visitor's credentials;
/// - at most [`MAX_BODY_BYTES`] (413);
/// - within the client timeout (408): actix bounds the time to send the head, but not the
///   body, so a client trickling one byte at a time would hold its connection for ever.
///
/// The body is handed on in memory, so the extractors read it at once.
pub async fn body<B, F>(
    mut req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    B: MessageBody + 'static,
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    if !has_body(&req) {
        return next(req).await.map(ServiceResponse::map_into_boxed_body);
    }
    if !is_json(&req) {
        let e = ApiError::from_status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "");
        return Ok(req.error_response(e));
    }
    let timeout = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_CLIENT_TIMEOUT, |s| s.client_timeout);
    let mut payload = req.take_payload();
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(StatusCode::PAYLOAD_TOO_LARGE);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(body)) => {
            req.set_payload(Payload::from(body));
            next(req).await.map(ServiceResponse::map_into_boxed_body)
        }
        Ok(Err(status)) => Ok(req.error_response(ApiError::from_status(status, ""))),
        Err(_) => {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "request body not sent in time; closing the connection"
            );
            let e = ApiError::from_status(StatusCode::REQUEST_TIMEOUT, "");
            let mut res = req.error_response(e);
            // The rest of the body may still come: the connection cannot carry another request.
            res.response_mut()
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(res)
        }
    }
}

/// A request has a body when it says so: a length above zero, or a chunked transfer.
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(n) => n > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`), in any case.
fn is_json(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Middleware of a resource: its handler's panics are answered (see [`catch_panics`]).
pub async fn answer_panics(
    req: ServiceRequest,
    next: actix_web::middleware::Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    catch_panics(req, |req| next.call(req)).await
}

/// Runs the rest of the chain; a panic inside it becomes a 500 in our shape (its message and
/// backtrace are logged by the panic hook, see [`log_panics`]), so the client gets an answer
/// and the worker goes on serving. Only after routing: it holds a handle on the request.
pub async fn catch_panics<B, F>(
    req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error>
where
    B: MessageBody + 'static,
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    let request = req.request().clone();
    match AssertUnwindSafe(next(req)).catch_unwind().await {
        Ok(res) => res.map(ServiceResponse::map_into_boxed_body),
        Err(_) => Ok(ServiceResponse::from_err(ApiError::server_fault(), request)),
    }
}

/// Logs every panic of the process, with its backtrace, as one error line, so a panic that a
/// request or a task hit is in the log however it ends.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::force_capture();
        let thread = std::thread::current();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            location = info.location().map(|l| l.to_string()).unwrap_or_default(),
            backtrace = %backtrace,
            "panicked: {}",
            panic_message(info),
        );
    }));
}

fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, HttpServer};

    async fn boom() -> HttpResponse {
        let parts: Vec<&str> = "é".split(',').collect();
        // Slicing inside a character: the kind of bug the guard is there for.
        HttpResponse::Ok().body(parts[0][..1].to_owned())
    }

    /// Over a real socket, on one worker: the panic is answered, and the same worker answers
    /// the next requests.
    #[actix_web::test]
    async fn a_handler_that_panics_answers_a_500_in_our_shape_and_its_worker_serves_on() {
        let server = HttpServer::new(|| {
            App::new()
                .service(
                    web::resource("/boom")
                        .wrap(from_fn(answer_panics))
                        .route(web::get().to(boom)),
                )
                .route(
                    "/ok",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                )
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let base = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let http = reqwest::Client::new();
        for _ in 0..3 {
            let r = http.get(format!("{base}/boom")).send().await.unwrap();
            assert_eq!(r.status(), 500);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"], "internal_error");
            assert!(!body["message"].as_str().unwrap().contains("char boundary"));
            let r = http.get(format!("{base}/ok")).send().await.unwrap();
            assert_eq!(r.text().await.unwrap(), "ok");
        }
        handle.stop(true).await;
    }
}
