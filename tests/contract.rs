//! What the OpenAPI document states is what the server does: values are taken in the one
//! spelling the document gives them, numbers by their value whatever their JSON spelling,
//! bounds are refused rather than clamped, and a well-formed request that only conflicts
//! with the state it meets is a 409, never a 400. (Schemathesis in `.ci/run` checks the whole
//! document against the server; these are the rules it found the two disagreeing on.)

mod common;

use common::{TestApp, ADMIN, RENTER, SUPPLIER};
use serde_json::{json, Value};

async fn admin_raw(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn ids_addresses_and_durations_are_taken_only_in_their_one_spelling() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/api/users/123/balance").await.status, 200);
    for bad in ["0123", "%20123", "123%20", "+123"] {
        let r = app.get(&format!("/api/users/{bad}/balance")).await;
        assert_eq!(
            (r.status, &r.body["error"]),
            (400, &json!("invalid_user_id")),
            "{bad}"
        );
    }
    for bad in [
        "01a20efac37a72748ffc8ff16280159f",
        "%7B01a20efa-c37a-7274-8ffc-8ff16280159f%7D",
        "urn:uuid:01a20efa-c37a-7274-8ffc-8ff16280159f",
    ] {
        let r = app.get(&format!("/api/orders/{bad}")).await;
        assert_eq!(
            (r.status, &r.body["error"]),
            (400, &json!("invalid_order_id")),
            "{bad}"
        );
    }
    let r = app.get("/api/quote?energy_amount=65000&duration=01h").await;
    assert_eq!(r.body["error"], "invalid_duration");
    let r = app
        .post(
            "/api/wallets/users/5",
            &json!({"wallet_address": format!("{RENTER} ")}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (400, &json!("invalid_wallet_address"))
    );
    let r = app
        .post(
            "/api/orders",
            &json!({"user_id": " 5", "energy_amount": 65000, "duration": "1h", "receive_address": RENTER}),
        )
        .await;
    assert_eq!(r.body["error"], "invalid_user_id");
    assert_eq!(
        app.get("/api/wallets/users/5").await.body["wallets"],
        json!([])
    );
}

#[tokio::test]
async fn integers_and_amounts_are_read_by_value_whatever_their_json_spelling() {
    let app = TestApp::spawn().await;
    // 2.55e1 TRX is 25.5 TRX exactly; 3e-06 TRX is 3 SUN.
    let (status, body) = admin_raw(
        &app,
        "/api/admin/users/123/credit",
        r#"{"amount_trx": 2.55e1, "reference": "deposit-e"}"#,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = admin_raw(
        &app,
        "/api/admin/users/123/credit",
        r#"{"amount_trx": 3e-06, "reference": "deposit-sun"}"#,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(app.balance_sun("123").await, 25_500_003);
    // A user id and an energy amount are integers in any JSON spelling of one.
    let r = app
        .post_raw(
            "/api/orders",
            &format!(r#"{{"user_id": 1.23e2, "energy_amount": 6.5e4, "duration": "1h", "receive_address": "{RENTER}", "cost_trx": 5.850000e0}}"#),
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (&r.body["user_id"], &r.body["cost_sun"]),
        (&json!("123"), &json!(5_850_000))
    );
    let r = app
        .post_raw(
            "/api/wallet-pool/check-availability",
            r#"{"energy_amount": 65000.0, "duration": "1h"}"#,
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Fractions are not energy, and more than 6 decimals are not TRX, however written.
    for body in [
        format!(
            r#"{{"user_id":"123","energy_amount":6.50005e4,"duration":"1h","receive_address":"{RENTER}"}}"#
        ),
        format!(
            r#"{{"user_id":"123","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":5.85e-7}}"#
        ),
    ] {
        let r = app.post_raw("/api/orders", &body, &[]).await;
        assert_eq!(r.status, 400, "{body}");
    }
}

#[tokio::test]
async fn string_amounts_are_plain_decimals_and_amounts_stay_below_ten_trillion_trx() {
    let app = TestApp::spawn().await;
    let credit = |amount: &str, reference: &str| {
        format!(r#"{{"amount_trx": {amount}, "reference": "{reference}"}}"#)
    };
    let path = "/api/admin/users/7/credit";
    assert_eq!(
        admin_raw(&app, path, &credit(r#""5.85""#, "s1")).await.0,
        201
    );
    assert_eq!(
        admin_raw(&app, path, &credit("9999999999999.999999", "big"))
            .await
            .0,
        201
    );
    for (amount, reference) in [
        (r#""05.85""#, "s2"),
        (r#""5.8500000""#, "s3"),
        (r#""5.""#, "s4"),
        (r#""1e3""#, "s5"),
        (r#"" 5""#, "s6"),
        ("10000000000000", "s7"),
        ("1e13", "s8"),
        ("0", "s9"),
    ] {
        let (status, body) = admin_raw(&app, path, &credit(amount, reference)).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_amount")),
            "{amount}"
        );
    }
    assert_eq!(
        app.balance_sun("7").await,
        5_850_000 + 9_999_999_999_999_999_999
    );
}

#[tokio::test]
async fn well_formed_requests_that_conflict_with_the_state_are_409_not_400() {
    let app = TestApp::spawn().await;
    // The balance cannot hold a second credit this large: that is the state, not the request.
    assert_eq!(app.credit("8", "9999999999999", "a").await.status, 201);
    let r = app.credit("8", "9999999999999", "b").await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (409, &json!("amount_too_large"))
    );
    assert_eq!(app.balance_sun("8").await, 9_999_999_999_999_000_000);
    // A deduct of another amount than the order's price.
    let id = app.order("8", 65000, "1h", "5.85").await.body["order_id"].clone();
    let r = app
        .post(
            "/api/users/8/deduct",
            &json!({"amount": 5.84, "order_id": id, "reason": "energy_purchase"}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (409, &json!("amount_mismatch"))
    );
    assert_eq!(r.body["expected_amount"], 5.85);
}

#[tokio::test]
async fn a_manual_delegation_the_chain_refuses_is_a_409_with_the_failed_order() {
    let app = TestApp::spawn().await;
    // A supplier wallet flashrent has no key for: nothing can sign its delegation.
    let r = app
        .admin_post(
            "/api/admin/wallet-pool/wallets",
            &json!({"address": RENTER, "energy_capacity": 1_000_000}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = app
        .admin_post(
            "/api/wallet-pool/delegate-energy",
            &json!({"from_address": RENTER, "to_address": SUPPLIER, "energy_amount": 65000, "duration_hours": 1.0}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["error"]),
        (409, &json!("delegation_failed")),
        "{}",
        r.body
    );
    assert_eq!(r.body["order"]["status"], "failed");
}

#[tokio::test]
async fn references_names_and_idempotency_keys_are_refused_not_trimmed() {
    let app = TestApp::spawn().await;
    for reference in [" deposit", "deposit ", "充值-1", "a\tb", ""] {
        let r = app
            .admin_post(
                "/api/admin/users/9/credit",
                &json!({"amount_trx": 1, "reference": reference}),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["error"]),
            (400, &json!("invalid_reference")),
            "{reference:?}"
        );
    }
    assert_eq!(app.credit("9", "1", "deposit 1").await.status, 201);
    assert_eq!(app.balance_sun("9").await, 1_000_000);
    for name in [" bot", "bot\u{3000}", "a\u{7}b"] {
        let r = app
            .admin_post(
                "/api/admin/api-keys",
                &json!({"scope": "frontend", "name": name}),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["field"]),
            (400, &json!("name")),
            "{name:?}"
        );
    }
    let r = app
        .post_raw(
            "/api/orders",
            &format!(r#"{{"user_id":"9","energy_amount":10000,"duration":"1h","receive_address":"{RENTER}"}}"#),
            &[("Idempotency-Key", "a\tb")],
        )
        .await;
    assert_eq!(r.body["error"], "invalid_idempotency_key");
    assert_eq!(app.balance_sun("9").await, 1_000_000);
}

#[tokio::test]
async fn query_parameters_outside_their_bounds_are_refused_not_clamped() {
    let app = TestApp::spawn().await;
    for (path, field) in [
        ("/api/users/5/ledger?limit=0", "limit"),
        ("/api/users/5/ledger?limit=501", "limit"),
        ("/api/users/5/ledger?from=-1", "from"),
        ("/api/users/5/ledger?from=18446744073709551616", "from"),
        ("/api/users/5/orders?limit=201", "limit"),
        ("/api/users/5/orders?limit=%2B5", "limit"),
        ("/api/users/5/orders?status=pending&status=failed", "status"),
    ] {
        let r = app.get(path).await;
        assert_eq!(
            (r.status, &r.body["field"]),
            (400, &json!(field)),
            "{path}: {}",
            r.body
        );
    }
    assert_eq!(
        app.get("/api/users/5/ledger?limit=500&from=0").await.status,
        200
    );
    assert_eq!(app.get("/api/users/5/orders?limit=200").await.status, 200);
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_a_405_in_our_shape_with_allow() {
    let app = TestApp::spawn().await;
    for (method, path, allow) in [
        (reqwest::Method::DELETE, "/api/orders", "POST"),
        (reqwest::Method::PUT, "/api/wallets/users/5", "GET, POST"),
        (reqwest::Method::PATCH, "/healthz", "GET"),
    ] {
        let r = app
            .http
            .request(method.clone(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        let got: Vec<&str> = r.headers()["allow"].to_str().unwrap().split(", ").collect();
        let mut got = got.into_iter().map(str::to_owned).collect::<Vec<_>>();
        got.sort();
        let mut want: Vec<String> = allow.split(", ").map(str::to_owned).collect();
        want.sort();
        assert_eq!(got, want, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
    }
}
