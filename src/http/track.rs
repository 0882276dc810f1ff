//! The request timer: every request's latency under its route pattern, into the process's
//! metrics ([`crate::metrics::METRICS`]).

use crate::metrics::METRICS;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use std::future::Future;
use std::time::Instant;

/// Middleware: observes every request's latency under its route pattern (never the raw
/// path, so ids do not explode the label set).
pub async fn track<B: MessageBody, F>(
    req: ServiceRequest,
    next: impl FnOnce(ServiceRequest) -> F,
) -> Result<ServiceResponse<B>, actix_web::Error>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    let started = Instant::now();
    let method = method_label(req.method());
    let res = next(req).await;
    // Asked after routing: the router then names the resource it matched. Asked before,
    // actix matches the path against every route's regex a second time.
    let (route, status) = match &res {
        Ok(r) => (r.request().match_pattern(), r.status()),
        Err(e) => (None, e.as_response_error().status_code()),
    };
    METRICS
        .http_duration
        .with_label_values(&[
            method,
            route.as_deref().unwrap_or("unmatched"),
            status.as_str(),
        ])
        .observe(started.elapsed().as_secs_f64());
    res
}

/// The method as a label: the standard ones by name, any other as `other`, so invented
/// methods cannot grow the label set without bound.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN
        .iter()
        .find(|(m, _)| m == method)
        .map_or("other", |(_, name)| name)
}
