//! `GET /metrics`: the Prometheus text of a service that has served an order.

mod common;

use common::TestApp;

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_show_latency_per_route_orders_by_status_outcomes_confirmations_and_lag() {
    let app = TestApp::spawn().await;
    assert_eq!(app.credit("123", "25.5", "deposit-m").await.status, 201);
    let r = app.post("/api/orders", &common::seed_order_body()).await;
    assert_eq!(r.status, 201);
    let id = r.body["order_id"].as_str().unwrap().to_owned();
    app.wait_final(&id).await;
    let _ = app.get("/api/orders/not-an-id").await;

    let res = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let count = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
    assert_eq!(
        count(
            r#"flashrent_http_request_duration_seconds_count{method="POST",route="/api/orders",status="201"}"#
        ),
        1.0
    );
    // Routes are labelled by pattern, not by raw path.
    assert!(
        count(
            r#"flashrent_http_request_duration_seconds_count{method="GET",route="/api/orders/{order_id}",status="200"}"#
        ) >= 1.0
    );
    assert_eq!(
        count(
            r#"flashrent_http_request_duration_seconds_count{method="GET",route="/api/orders/{order_id}",status="400"}"#
        ),
        1.0
    );
    assert_eq!(count(r#"flashrent_orders{status="completed"}"#), 1.0);
    assert_eq!(
        count(r#"flashrent_order_outcomes_total{outcome="completed"}"#),
        1.0
    );
    assert_eq!(
        count(r#"flashrent_chain_delegations_total{outcome="confirmed"}"#),
        1.0
    );
    assert_eq!(count("flashrent_chain_confirmation_seconds_count"), 1.0);
    assert!(count("flashrent_chain_confirmation_seconds_sum") > 0.0);
    assert_eq!(
        count(r#"flashrent_projector_lag_records{partition="0"}"#),
        0.0
    );
    assert!(text.contains("flashrent_saga_in_flight "));
    assert_eq!(count("flashrent_order_success_ratio"), 1.0);
}
