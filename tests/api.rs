//! Black-box tests of every endpoint and error, against the real binary over HTTP.

mod common;

use common::{TestApp, RENTER, SUPPLIER};
use serde_json::{json, Value};

#[tokio::test]
async fn the_seeds_curl_example_buys_energy_end_to_end() {
    let app = TestApp::spawn().await;
    assert_eq!(app.credit("123", "25.5", "deposit-42").await.status, 201);
    // The seed's request body, verbatim.
    let r = app
        .post_raw(
            "/api/orders",
            r#"{"user_id": "123", "energy_amount": 65000, "duration": "1h", "receive_address": "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2", "cost_trx": 5.85}"#,
            &[],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    for k in ["order_id", "created_at", "estimated_completion"] {
        assert!(r.body[k].is_string(), "{k} in {}", r.body);
    }
    let id = r.body["order_id"].as_str().unwrap();
    let o = app.wait_final(id).await;
    assert_eq!(o["status"], "completed");
    assert_eq!(o["user_id"], "123");
    assert_eq!(o["energy_amount"], 65000);
    assert_eq!(o["duration"], "1h");
    assert_eq!(o["receive_address"], RENTER);
    assert_eq!(o["cost_trx"], 5.85);
    assert_eq!(o["transaction_hash"].as_str().unwrap().len(), 64);
    assert!(o["completed_at"].is_string());
    let b = app.get("/api/users/123/balance").await;
    assert_eq!(b.body["user_id"], 123);
    assert_eq!(b.body["balance_trx"], 19.65);
    assert_eq!(b.body["balance_sun"], 19_650_000);
    assert!(b.body["last_updated"].is_string());
}

#[tokio::test]
async fn insufficient_balance_answers_the_seeds_error_and_records_nothing() {
    let app = TestApp::spawn().await;
    app.credit("7", "3.5", "d1").await;
    let r = app.order("7", 65000, "1h", "5.85").await;
    assert_eq!(r.status, 402);
    assert_eq!(r.body["error"], "insufficient_balance");
    assert_eq!(
        r.body["message"],
        "用户余额不足，当前余额: 3.50 TRX，需要: 5.85 TRX"
    );
    assert_eq!(r.body["required_amount"], 5.85);
    assert_eq!(r.body["current_balance"], 3.5);
    assert_eq!(
        app.get("/api/users/7/orders").await.body["orders"],
        json!([])
    );
    assert_eq!(
        app.get("/api/users/7/ledger").await.body["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(app.balance_sun("7").await, 3_500_000);
}

#[tokio::test]
async fn wallets_are_validated_listed_and_never_duplicated() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/api/wallets/users/5").await.body,
        json!({"wallets": []})
    );
    let r = app
        .post("/api/wallets/users/5", &json!({"wallet_address": RENTER}))
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["id"], 1);
    assert_eq!(r.body["wallet_address"], RENTER);
    let again = app
        .post("/api/wallets/users/5", &json!({"wallet_address": RENTER}))
        .await;
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error"], "wallet_already_exists");
    let second = app
        .post("/api/wallets/users/5", &json!({"wallet_address": SUPPLIER}))
        .await;
    assert_eq!(second.body["id"], 2);
    let list = app.get("/api/wallets/users/5").await.body["wallets"].clone();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["wallet_address"], RENTER);
    assert!(list[0]["created_at"].is_string());
    // A changed last character breaks the checksum; the seed's sample supplier address too.
    for bad in [
        "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv3",
        "TVj7RNVHNv1ym6JxWePCHnKgdvnGqr4f2S",
        "0x1234",
        "",
    ] {
        let r = app
            .post("/api/wallets/users/5", &json!({"wallet_address": bad}))
            .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.body["error"], "invalid_wallet_address");
    }
    assert_eq!(
        app.post("/api/wallets/users/abc", &json!({"wallet_address": RENTER}))
            .await
            .body["error"],
        "invalid_user_id"
    );
    assert_eq!(
        app.get("/api/wallets/users/5").await.body["wallets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn orders_are_priced_by_the_server_and_bad_ones_refused_with_nothing_recorded() {
    let app = TestApp::spawn().await;
    app.credit("9", "100", "d").await;
    let mismatch = app.order("9", 65000, "1h", "5.80").await;
    assert_eq!(mismatch.status, 409);
    assert_eq!(mismatch.body["error"], "price_mismatch");
    assert_eq!(mismatch.body["quoted_cost_trx"], 5.85);
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"user_id":"9","energy_amount":65000,"duration":"2h","receive_address":"{RENTER}"}}"#), "duration_not_offered"),
        (format!(r#"{{"user_id":"9","energy_amount":65000,"duration":"soon","receive_address":"{RENTER}"}}"#), "invalid_duration"),
        (format!(r#"{{"user_id":"9","energy_amount":5,"duration":"1h","receive_address":"{RENTER}"}}"#), "energy_out_of_range"),
        (format!(r#"{{"user_id":"9","energy_amount":-5,"duration":"1h","receive_address":"{RENTER}"}}"#), "invalid_energy_amount"),
        (format!(r#"{{"user_id":"9","energy_amount":650.5,"duration":"1h","receive_address":"{RENTER}"}}"#), "invalid_energy_amount"),
        (format!(r#"{{"user_id":"9","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":5.8500001}}"#), "invalid_amount"),
        (format!(r#"{{"user_id":"9","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":-5.85}}"#), "invalid_amount"),
        (format!(r#"{{"user_id":"9","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":0}}"#), "invalid_amount"),
        (format!(r#"{{"user_id":"x9","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}"}}"#), "invalid_user_id"),
        (r#"{"user_id":"9","energy_amount":65000,"duration":"1h","receive_address":"TNotAnAddress"}"#.to_owned(), "invalid_wallet_address"),
        (r#"{"user_id":"9","energy_amount":65000}"#.to_owned(), "invalid_field"),
        (r#"{"user_id":"9","energy_amount":65000,"duration":1,"receive_address":"x"}"#.to_owned(), "invalid_field"),
        ("{not json".to_owned(), "invalid_json"),
        ("[]".to_owned(), "invalid_field"),
    ];
    for (body, code) in cases {
        let r = app.post_raw("/api/orders", &body, &[]).await;
        assert_eq!(r.status, 400, "{body} -> {}", r.body);
        assert_eq!(r.body["error"], code, "{body}");
        assert!(r.body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(
        app.get("/api/users/9/orders").await.body["orders"],
        json!([])
    );
    assert_eq!(app.balance_sun("9").await, 100_000_000);
    // Exact decimal text: 5.850000 is 5.85.
    assert_eq!(app.order("9", 65000, "1h", "5.850000").await.status, 201);
    // Without cost_trx the server's price applies.
    let r = app.post_raw("/api/orders", &format!(r#"{{"user_id":9,"energy_amount":100000,"duration":"1d","receive_address":"{RENTER}"}}"#), &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["cost_trx"], 12);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_result_and_creates_nothing_new() {
    let app = TestApp::spawn().await;
    app.credit("11", "20", "d").await;
    let body = format!(
        r#"{{"user_id":"11","energy_amount":65000,"duration":"1h","receive_address":"{RENTER}","cost_trx":5.85}}"#
    );
    let first = app
        .post_raw("/api/orders", &body, &[("Idempotency-Key", "buy-1")])
        .await;
    let second = app
        .post_raw("/api/orders", &body, &[("Idempotency-Key", "buy-1")])
        .await;
    assert_eq!(first.status, 201);
    assert_eq!(second.status, 200);
    assert_eq!(second.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(first.body["order_id"], second.body["order_id"]);
    assert_eq!(app.balance_sun("11").await, 20_000_000 - 5_850_000);
    let other = body.replace("65000", "70000").replace("5.85", "6.3");
    let reused = app
        .post_raw("/api/orders", &other, &[("Idempotency-Key", "buy-1")])
        .await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.body["error"], "idempotency_key_reused");
    assert_eq!(
        app.get("/api/users/11/orders").await.body["orders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn deduct_pays_each_order_exactly_once_and_checks_owner_and_amount() {
    let app = TestApp::spawn().await;
    app.credit("21", "20", "d").await;
    let id = app.order("21", 65000, "1h", "5.85").await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deduct = |user: &'static str, amount: &'static str, id: String| {
        let app = &app;
        async move {
            app.post_raw(
                &format!("/api/users/{user}/deduct"),
                &format!(
                    r#"{{"amount": {amount}, "order_id": "{id}", "reason": "energy_purchase"}}"#
                ),
                &[],
            )
            .await
        }
    };
    let r = deduct("21", "5.85", id.clone()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "already_deducted");
    assert_eq!(r.body["deducted"], false);
    assert_eq!(
        deduct("21", "5.85", id.clone()).await.body["status"],
        "already_deducted"
    );
    assert_eq!(app.balance_sun("21").await, 14_150_000);
    let wrong = deduct("21", "5.84", id.clone()).await;
    assert_eq!(
        (wrong.status, wrong.body["error"].clone()),
        (409, json!("amount_mismatch"))
    );
    let other = deduct("22", "5.85", id.clone()).await;
    assert_eq!(
        (other.status, other.body["error"].clone()),
        (403, json!("order_not_owned"))
    );
    let missing = deduct("21", "5.85", "01a20efa-c37a-7274-8ffc-8ff16280159f".into()).await;
    assert_eq!(
        (missing.status, missing.body["error"].clone()),
        (404, json!("order_not_found"))
    );
    assert_eq!(
        deduct("21", "5.85", "nope".into()).await.body["error"],
        "invalid_order_id"
    );
    assert_eq!(app.balance_sun("21").await, 14_150_000);
    let ledger = app.get("/api/users/21/ledger").await.body["entries"].clone();
    assert_eq!(ledger.as_array().unwrap().len(), 2);
    assert_eq!(ledger[1]["delta_sun"], -5_850_000);
    assert_eq!(ledger[1]["cause"], "order_payment");
    assert_eq!(ledger[1]["order_id"], json!(id));
}

#[tokio::test]
async fn the_pool_answers_availability_in_the_seeds_shape_and_quotes_prices() {
    let app = TestApp::spawn().await;
    let r = app
        .post(
            "/api/wallet-pool/check-availability",
            &json!({"energy_amount": 65000, "duration": "1h"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["available"], true);
    assert_eq!(r.body["selected_wallet"], SUPPLIER);
    assert!(r.body["available_energy"].as_u64().unwrap() >= 65000);
    let q = app.get("/api/quote?energy_amount=65000&duration=1h").await;
    assert_eq!(q.body["cost_trx"], 5.85);
    assert_eq!(q.body["available"], true);
    assert_eq!(
        app.get("/api/quote?energy_amount=65000&duration=9h")
            .await
            .body["error"],
        "duration_not_offered"
    );
    assert_eq!(
        app.get("/api/quote?energy_amount=abc&duration=1h")
            .await
            .status,
        400
    );
    assert_eq!(
        app.post(
            "/api/wallet-pool/check-availability",
            &json!({"energy_amount": "x", "duration": "1h"})
        )
        .await
        .status,
        400
    );
}

#[tokio::test]
async fn best_fit_picks_the_smallest_wallet_that_covers_the_request() {
    let app = TestApp::spawn_with(&[("FLASHRENT_DEMO_SUPPLIER_ENERGY", "0")]).await;
    let none = app
        .post(
            "/api/wallet-pool/check-availability",
            &json!({"energy_amount": 65000, "duration": "1h"}),
        )
        .await;
    assert_eq!(
        none.body,
        json!({"available": false, "selected_wallet": null, "available_energy": 0})
    );
    for (addr, cap) in [(SUPPLIER, 1_000_000), (RENTER, 150_000)] {
        let r = app
            .admin_post(
                "/api/admin/wallet-pool/wallets",
                &json!({"address": addr, "energy_capacity": cap}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let dup = app
        .admin_post(
            "/api/admin/wallet-pool/wallets",
            &json!({"address": RENTER, "energy_capacity": 5}),
        )
        .await;
    assert_eq!(
        (dup.status, dup.body["error"].clone()),
        (409, json!("supplier_wallet_exists"))
    );
    let small = app
        .post(
            "/api/wallet-pool/check-availability",
            &json!({"energy_amount": 65000, "duration": "1h"}),
        )
        .await;
    assert_eq!(
        small.body,
        json!({"available": true, "selected_wallet": RENTER, "available_energy": 150000})
    );
    let big = app
        .post(
            "/api/wallet-pool/check-availability",
            &json!({"energy_amount": 200000, "duration": "1h"}),
        )
        .await;
    assert_eq!(big.body["selected_wallet"], SUPPLIER);
    let unauth = app
        .post(
            "/api/admin/wallet-pool/wallets",
            &json!({"address": SUPPLIER, "energy_capacity": 1}),
        )
        .await;
    assert_eq!(unauth.status, 401);
}

#[tokio::test]
async fn admin_credit_is_idempotent_by_reference_and_needs_the_token() {
    let app = TestApp::spawn().await;
    assert_eq!(app.credit("31", "25.5", "deposit-42").await.status, 201);
    let again = app.credit("31", "25.5", "deposit-42").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["credited"], false);
    assert_eq!(app.balance_sun("31").await, 25_500_000);
    let conflict = app.credit("31", "30", "deposit-42").await;
    assert_eq!(
        (conflict.status, conflict.body["error"].clone()),
        (409, json!("credit_reference_conflict"))
    );
    for bad in ["0", "-1", "1.0000001", "\"abc\""] {
        assert_eq!(
            app.credit("31", bad, "x").await.body["error"],
            "invalid_amount",
            "{bad}"
        );
    }
    let no_token = app
        .post(
            "/api/admin/users/31/credit",
            &json!({"amount_trx": 1, "reference": "r"}),
        )
        .await;
    assert_eq!(
        (no_token.status, no_token.body["error"].clone()),
        (401, json!("unauthorized"))
    );
    let wrong = app
        .send_with_token("/api/admin/users/31/credit", "wrong")
        .await;
    assert_eq!(wrong, 401);
    assert_eq!(app.balance_sun("31").await, 25_500_000);
}

trait TokenExt {
    async fn send_with_token(&self, path: &str, token: &str) -> u16;
}
impl TokenExt for TestApp {
    async fn send_with_token(&self, path: &str, token: &str) -> u16 {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&json!({"amount_trx": 1, "reference": "r"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn manual_delegation_is_admin_only_and_answers_in_the_seeds_shape() {
    let app = TestApp::spawn().await;
    let body = json!({"from_address": SUPPLIER, "to_address": RENTER, "energy_amount": 65000, "duration_hours": 1});
    assert_eq!(
        app.post("/api/wallet-pool/delegate-energy", &body)
            .await
            .status,
        401
    );
    let r = app
        .admin_post("/api/wallet-pool/delegate-energy", &body)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["status"] == "broadcasted" || r.body["status"] == "confirmed");
    assert_eq!(r.body["transaction_hash"].as_str().unwrap().len(), 64);
    assert!(r.body["estimated_confirmation"].is_string());
    let o = app
        .wait_order(r.body["order_id"].as_str().unwrap(), 30, |o| {
            o["status"] == "completed"
        })
        .await;
    assert_eq!(o["transaction_hash"], r.body["transaction_hash"]);
    let unknown = json!({"from_address": RENTER, "to_address": SUPPLIER, "energy_amount": 65000, "duration_hours": 1});
    assert_eq!(
        app.admin_post("/api/wallet-pool/delegate-energy", &unknown)
            .await
            .body["error"],
        "supplier_wallet_not_found"
    );
    let bad = json!({"from_address": SUPPLIER, "to_address": RENTER, "energy_amount": 65000, "duration_hours": 0});
    assert_eq!(
        app.admin_post("/api/wallet-pool/delegate-energy", &bad)
            .await
            .body["error"],
        "invalid_duration"
    );
}

#[tokio::test]
async fn an_order_the_pool_cannot_serve_fails_and_is_refunded_once() {
    let app = TestApp::spawn_with(&[("FLASHRENT_DEMO_SUPPLIER_ENERGY", "100000")]).await;
    app.credit("41", "20", "d").await;
    let a = app.order("41", 65000, "1h", "5.85").await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = app.order("41", 65000, "1h", "5.85").await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.wait_final(&a).await["status"], "completed");
    let failed = app.wait_final(&b).await;
    assert_eq!(failed["status"], "refunded");
    assert_eq!(failed["failure_reason"], "insufficient_pool_energy");
    assert!(failed["refunded_at"].is_string());
    assert_eq!(app.balance_sun("41").await, 20_000_000 - 5_850_000);
    let causes: Vec<Value> = app.get("/api/users/41/ledger").await.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["cause"].clone())
        .collect();
    assert_eq!(
        causes,
        vec![
            json!("credit"),
            json!("order_payment"),
            json!("order_payment"),
            json!("refund")
        ]
    );
    let refunded = app.get("/api/users/41/orders?status=refunded").await.body["orders"].clone();
    assert_eq!(refunded.as_array().unwrap().len(), 1);
    assert_eq!(refunded[0]["order_id"], json!(b));
}

#[tokio::test]
async fn a_delegation_that_keeps_failing_on_chain_fails_the_order_and_frees_the_energy() {
    let app = TestApp::spawn_with(&[("FLASHRENT_DEVNET_FAILURE_RATE", "1")]).await;
    app.credit("51", "10", "d").await;
    let id = app.order("51", 65000, "1h", "5.85").await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = app.wait_final(&id).await;
    assert_eq!(o["status"], "refunded");
    assert_eq!(o["failure_reason"], "delegation_failed");
    assert_eq!(o["transaction_hash"], Value::Null);
    assert_eq!(app.balance_sun("51").await, 10_000_000);
    let pool = app.pool().await;
    assert_eq!(pool["wallets"][0]["reserved_energy"], 0);
    assert_eq!(pool["wallets"][0]["delegated_energy"], 0);
}

#[tokio::test]
async fn a_rental_ends_with_its_energy_reclaimed_and_returned_to_the_pool() {
    let app = TestApp::spawn_with(&[
        ("FLASHRENT_PRICES", "1m=10,1h=90"),
        ("FLASHRENT_RENTAL_TIME_SCALE", "0.05"),
    ])
    .await;
    app.credit("61", "10", "d").await;
    let id = app.order("61", 65000, "1m", "0.65").await.body["order_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let o = app
        .wait_order(&id, 30, |o| o["rental_ended_at"].is_string())
        .await;
    assert_eq!(o["status"], "completed");
    assert_eq!(o["reclaim_transaction_hash"].as_str().unwrap().len(), 64);
    assert_ne!(o["reclaim_transaction_hash"], o["transaction_hash"]);
    let pool = app.pool().await;
    assert_eq!(pool["wallets"][0]["delegated_energy"], 0);
    assert_eq!(
        pool["wallets"][0]["available_energy"],
        pool["wallets"][0]["energy_capacity"]
    );
}

#[tokio::test]
async fn malformed_requests_get_our_error_shape_never_a_500() {
    let app = TestApp::spawn().await;
    let huge = format!(r#"{{"wallet_address": "{}"}}"#, "T".repeat(100_000));
    let r = app.post_raw("/api/wallets/users/5", &huge, &[]).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (413, json!("payload_too_large"))
    );
    let r = app.get("/api/nothing/here").await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (404, json!("not_found"))
    );
    let r = app
        .http
        .delete(format!("{}/api/orders", app.base))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
    let en = app
        .http
        .get(format!("{}/api/users/abc/balance", app.base))
        .header("Accept-Language", "en-US")
        .send()
        .await
        .unwrap();
    assert_eq!(en.status(), 400);
    let body: Value = en.json().await.unwrap();
    assert_eq!(body["error"], "invalid_user_id");
    assert_eq!(body["message"], "invalid user id: abc");
    let zh = app.get("/api/users/abc/balance").await;
    assert_eq!(zh.body["message"], "用户ID格式无效: abc");
    for bad in ["0", "-1", "12345678901234567890", "1.5"] {
        assert_eq!(
            app.get(&format!("/api/users/{bad}/balance")).await.status,
            400,
            "{bad}"
        );
    }
    assert_eq!(
        app.get("/api/orders/not-a-uuid").await.body["error"],
        "invalid_order_id"
    );
    assert_eq!(
        app.get("/api/orders/01a20efa-c37a-7274-8ffc-8ff16280159f")
            .await
            .status,
        404
    );
    assert_eq!(
        app.get("/api/users/5/orders?status=weird").await.body["error"],
        "invalid_status"
    );
    assert_eq!(app.post_raw("/api/orders", "", &[]).await.status, 400);
}

#[tokio::test]
async fn a_users_orders_page_newest_first_and_filter_by_status() {
    let app = TestApp::spawn().await;
    app.credit("71", "100", "d").await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            app.order("71", 65000, "1h", "5.85").await.body["order_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.wait_final(id).await;
    }
    let page1 = app.get("/api/users/71/orders?limit=3").await.body;
    let got: Vec<&str> = page1["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]);
    let after = page1["next_after"].as_str().unwrap();
    let page2 = app
        .get(&format!("/api/users/71/orders?limit=3&after={after}"))
        .await
        .body;
    assert_eq!(page2["orders"].as_array().unwrap().len(), 2);
    assert_eq!(page2["next_after"], Value::Null);
    assert_eq!(
        app.get("/api/users/71/orders?status=completed").await.body["orders"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    assert_eq!(
        app.get("/api/users/71/orders?status=pending").await.body["orders"],
        json!([])
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.body["status"], "ready");
}

#[tokio::test]
async fn client_routes_can_require_an_api_key() {
    let app = TestApp::spawn_with(&[("FLASHRENT_API_KEYS", "k1,k2")]).await;
    assert_eq!(app.get("/api/users/1/balance").await.status, 401);
    let ok = app
        .http
        .get(format!("{}/api/users/1/balance", app.base))
        .header("X-API-Key", "k2")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn without_a_configured_token_one_is_generated_and_kept_private() {
    let temp = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(temp.path(), &[("FLASHRENT_ADMIN_TOKEN", "")]).await;
    let path = temp.path().join("admin-token");
    let token = std::fs::read_to_string(&path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let r = app
        .http
        .get(format!("{}/api/admin/wallet-pool/wallets", app.base))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = std::fs::read_to_string(temp.path().join("server.log")).unwrap();
    assert!(
        log.contains("admin-token") && !log.contains(token.trim()),
        "the log names the file, never the token"
    );
}
