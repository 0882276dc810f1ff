//! `flashrent rebuild` drops the read models and rebuilds them from the log with the same result.

mod common;

use common::{TestApp, RENTER, SUPPLIER};
use serde_json::json;
use std::process::Command;

#[tokio::test]
async fn rebuilding_the_read_models_gives_back_what_was_there() {
    let temp = tempfile::tempdir().unwrap();
    let mut app =
        TestApp::spawn_in(temp.path(), &[("FLASHRENT_DEMO_SUPPLIER_ENERGY", "200000")]).await;
    app.credit("3001", "30", "d").await;
    app.post(
        "/api/wallets/users/3001",
        &json!({"wallet_address": RENTER}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(
            app.order("3001", 65000, "1h", "5.85").await.body["order_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        app.wait_final(id).await;
    }
    let mut before_orders = Vec::new();
    for id in &ids {
        before_orders.push(app.get(&format!("/api/orders/{id}")).await.body);
    }
    let before_ledger = app.get("/api/users/3001/ledger").await.body;
    app.stop();

    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["rebuild", "--verify", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identical"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let app = TestApp::spawn_in(temp.path(), &[]).await;
    let mut after_orders = Vec::new();
    for id in &ids {
        after_orders.push(app.get(&format!("/api/orders/{id}")).await.body);
    }
    assert_eq!(before_orders, after_orders);
    assert_eq!(before_ledger, app.get("/api/users/3001/ledger").await.body);
    assert_eq!(
        app.get("/api/users/3001/orders?status=refunded").await.body["orders"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pool = app.pool().await;
    assert_eq!(pool["wallets"][0]["address"], SUPPLIER);
    assert_eq!(pool["wallets"][0]["delegated_energy"], 195000);
}
