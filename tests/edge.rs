//! What the HTTP edge does with hostile or careless clients: input that used to panic a
//! worker, bodies that are not JSON, invented methods, and clients that send slowly.

mod common;

use common::TestApp;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A duration ending in a multi-byte character used to slice inside it and panic the worker,
/// which dropped the connection without an answer.
#[tokio::test]
async fn a_duration_with_a_multibyte_character_is_refused_not_a_dropped_connection() {
    let app = TestApp::spawn().await;
    for duration in ["é", "1é", "٣h", "1\u{1F600}"] {
        let q = app
            .http
            .get(format!("{}/api/quote", app.base))
            .query(&[("energy_amount", "65000"), ("duration", duration)])
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(q.status(), 400, "{duration}");
        let body: Value = q.json().await.unwrap();
        assert_eq!(body["error"], "invalid_duration", "{duration}");

        let mut order = common::seed_order_body();
        order["duration"] = json!(duration);
        let r = app.post("/api/orders", &order).await;
        assert_eq!(
            (r.status, r.body["error"].clone()),
            (400, json!("invalid_duration"))
        );
        let r = app
            .post(
                "/api/wallet-pool/check-availability",
                &json!({"energy_amount": 65000, "duration": duration}),
            )
            .await;
        assert_eq!(
            (r.status, r.body["error"].clone()),
            (400, json!("invalid_duration"))
        );
    }
    assert!(
        !app.log_tail(10_000).contains("panicked"),
        "the server panicked:\n{}",
        app.log_tail(40)
    );
}

/// A web page can POST `text/plain` or a form to another site without a CORS preflight; if
/// such a body were read as JSON, any page could place orders with a visitor's key.
#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415_and_nothing_is_recorded() {
    let app = TestApp::spawn().await;
    app.credit("123", "25.5", "deposit-1").await;
    let order = common::seed_order_body().to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonp"),
        None,
    ] {
        let mut req = app
            .http
            .post(format!("{}/api/orders", app.base))
            .body(order.clone());
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 415, "{content_type:?}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unsupported_media_type", "{content_type:?}");
    }
    let orders = app.get("/api/users/123/orders").await;
    assert_eq!(orders.body["orders"], json!([]));
    assert_eq!(app.balance_sun("123").await, 25_500_000);
    let ledger = app.get("/api/users/123/ledger").await;
    assert_eq!(ledger.body["entries"].as_array().map(Vec::len), Some(1));

    // JSON with its parameters, in any case, is JSON.
    let r = app
        .post_raw(
            "/api/orders",
            &order,
            &[("content-type", "Application/JSON; charset=utf-8")],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // English, like every other error.
    let r = app
        .http
        .post(format!("{}/api/orders", app.base))
        .header("content-type", "text/plain")
        .header("accept-language", "en")
        .body(order)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "unsupported content type");
}

/// Each invented method used to become a label value of its own, so a client could grow the
/// metrics without bound.
#[tokio::test]
async fn invented_methods_are_counted_as_other_in_the_metrics() {
    let app = TestApp::spawn().await;
    for i in 0..30 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let r = app
            .http
            .request(method, format!("{}/api/orders", app.base))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!metrics.contains("BREW"), "{metrics}");
    assert!(
        metrics.contains(r#"method="other""#),
        "no request counted as other"
    );
}

/// Sends the head of a request and then `body` one byte at a time, `every` apart, and
/// returns what the server answered and how long it took to close the connection.
fn trickle(base: &str, head: &str, body: &[u8], every: Duration) -> (String, Duration) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(every)).unwrap();
    let started = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for b in body.iter().cycle() {
        if started.elapsed() > Duration::from_secs(30) {
            panic!("the server kept a trickling connection open for 30 s");
        }
        if s.write_all(&[*b]).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

/// A client that sends its head or its body a byte at a time holds its connection only for
/// the client timeout, and everyone else is served meanwhile.
#[tokio::test]
async fn slow_clients_are_cut_off_and_others_are_served_meanwhile() {
    let app = TestApp::spawn_with(&[("FLASHRENT_CLIENT_TIMEOUT_MS", "1500")]).await;
    let base = app.base.clone();
    let slow_body = std::thread::spawn({
        let base = base.clone();
        move || {
            let head = "POST /api/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n";
            trickle(&base, head, b"{\"user_id\": ", Duration::from_millis(200))
        }
    });
    let slow_head = std::thread::spawn(move || {
        let head = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
        trickle(&base, head, b"X-Slow: aaaa", Duration::from_millis(200))
    });
    // Served while both trickle.
    for _ in 0..10 {
        let r = app.get("/api/quote?energy_amount=65000&duration=1h").await;
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (answer, took) = slow_body.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
    let (answer, took) = slow_head.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}
