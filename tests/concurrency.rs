//! Many simultaneous orders from one user can never spend more than the balance. The
//! service runs in the test's process (`spawn_app`).

mod common;

use common::spawn_app;
use futures_util::future::join_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_simultaneous_orders_on_a_balance_for_seven_pay_exactly_seven() {
    let app = spawn_app().await;
    // 7 × 5.85 = 40.95, plus 1 TRX that no order can use.
    app.credit("1001", "41.95", "d").await;
    let results = join_all((0..50).map(|_| app.order("1001", 65000, "1h", "5.85"))).await;
    let paid: Vec<_> = results.iter().filter(|r| r.status == 201).collect();
    let refused = results.iter().filter(|r| r.status == 402).count();
    assert_eq!(paid.len(), 7);
    assert_eq!(refused, 43);
    for r in results.iter().filter(|r| r.status == 402) {
        assert_eq!(r.body["error"], "insufficient_balance");
    }
    assert_eq!(app.balance_sun("1001").await, 1_000_000);
    for r in &paid {
        assert_eq!(
            app.wait_final(r.body["order_id"].as_str().unwrap()).await["status"],
            "completed"
        );
    }
    // The ledger never dipped below zero and sums to the balance, with every record of the
    // saga's steps applied.
    app.project_until_caught_up().await;
    let ledger = app.get("/api/users/1001/ledger?limit=500").await.body["entries"].clone();
    let mut sum: i64 = 0;
    for e in ledger.as_array().unwrap() {
        sum += e["delta_sun"].as_i64().unwrap();
        assert!(sum >= 0);
        assert_eq!(e["balance_after_sun"].as_i64().unwrap(), sum);
    }
    assert_eq!(sum, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_credits_with_one_reference_credit_once() {
    let app = spawn_app().await;
    let results = join_all((0..20).map(|_| app.credit("1002", "3", "same-ref"))).await;
    assert_eq!(results.iter().filter(|r| r.status == 201).count(), 1);
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 19);
    assert_eq!(app.balance_sun("1002").await, 3_000_000);
}
