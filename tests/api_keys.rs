//! API keys per account: a user key acts for its own user only, a front-end key (or a
//! configured one) for anyone; keys are kept as hashes in the log, listed without their
//! secret, revoked for good; and orders are rate-limited per user and per key.

mod common;

use common::{TestApp, ADMIN, RENTER};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Call<'a> {
    app: &'a TestApp,
    key: Option<&'a str>,
}

impl Call<'_> {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self
            .app
            .http
            .request(method, format!("{}{path}", self.app.base));
        if let Some(k) = self.key {
            r = r.header("X-API-Key", k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

async fn issue(app: &TestApp, body: Value) -> Value {
    let r = app.admin_post("/api/admin/api-keys", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

fn order_for(user: &str) -> Value {
    json!({"user_id": user, "energy_amount": 65000, "duration": "1h", "receive_address": RENTER, "cost_trx": 5.85})
}

#[tokio::test]
async fn a_user_key_acts_for_its_own_user_only_and_closes_the_open_routes() {
    let app = TestApp::spawn().await;
    app.credit("123", "50", "c-123").await;
    app.credit("456", "50", "c-456").await;
    let open = Call {
        app: &app,
        key: None,
    };
    // No key exists: the client routes are open.
    assert_eq!(open.get("/api/users/123/balance").await.0, 200);
    let other_order = open.post("/api/orders", order_for("456")).await;
    assert_eq!(other_order.0, 201);
    let other_order = other_order.1["order_id"].as_str().unwrap().to_owned();
    let (_, ledger_before) = open.get("/api/users/456/ledger").await;

    let issued = issue(&app, json!({"user_id": "123", "name": "shop of 123"})).await;
    assert_eq!(issued["scope"], "user");
    assert_eq!(issued["user_id"], "123");
    assert_eq!(issued["name"], "shop of 123");
    let key = issued["key"].as_str().unwrap().to_owned();
    let mine = Call {
        app: &app,
        key: Some(&key),
    };

    // Once a key exists, a request without one is refused.
    for path in [
        "/api/users/123/balance",
        "/api/quote?energy_amount=65000&duration=1h",
    ] {
        assert_eq!(open.get(path).await.0, 401, "{path}");
    }
    let wrong = Call {
        app: &app,
        key: Some("frk_00"),
    };
    assert_eq!(wrong.get("/api/users/123/balance").await.0, 401);

    // Its own user: everything.
    assert_eq!(mine.get("/api/users/123/balance").await.0, 200);
    assert_eq!(mine.get("/api/users/123/ledger").await.0, 200);
    assert_eq!(mine.get("/api/users/123/orders").await.0, 200);
    assert_eq!(mine.get("/api/wallets/users/123").await.0, 200);
    let placed = mine.post("/api/orders", order_for("123")).await;
    assert_eq!(placed.0, 201, "{}", placed.1);
    let my_order = placed.1["order_id"].as_str().unwrap().to_owned();
    assert_eq!(mine.get(&format!("/api/orders/{my_order}")).await.0, 200);
    assert_eq!(
        mine.get("/api/quote?energy_amount=65000&duration=1h")
            .await
            .0,
        200
    );

    // Another user, in the path or the body: 403, and nothing recorded.
    let refusals = [
        mine.get("/api/users/456/balance").await,
        mine.get("/api/users/456/ledger").await,
        mine.get("/api/users/456/orders").await,
        mine.get("/api/wallets/users/456").await,
        mine.get(&format!("/api/orders/{other_order}")).await,
        mine.post("/api/orders", order_for("456")).await,
        mine.post("/api/wallets/users/456", json!({"wallet_address": RENTER}))
            .await,
        mine.post(
            "/api/users/456/deduct",
            json!({"amount": 5.85, "order_id": other_order}),
        )
        .await,
    ];
    for (status, body) in refusals {
        assert_eq!(
            (status, body["error"].clone()),
            (403, json!("forbidden_user"))
        );
    }
    let frontend = issue(&app, json!({"scope": "frontend", "name": "telegram-bot"})).await;
    assert_eq!(frontend["scope"], "frontend");
    assert!(frontend.get("user_id").is_none_or(Value::is_null));
    let bot = Call {
        app: &app,
        key: frontend["key"].as_str(),
    };
    let (_, ledger) = bot.get("/api/users/456/ledger").await;
    assert_eq!(ledger["entries"], ledger_before["entries"]);
    let (_, wallets) = bot.get("/api/wallets/users/456").await;
    assert_eq!(wallets["wallets"], json!([]));
    let (_, orders) = bot.get("/api/users/456/orders").await;
    assert_eq!(orders["orders"].as_array().unwrap().len(), 1);

    // The front-end key acts for anyone.
    assert_eq!(bot.post("/api/orders", order_for("456")).await.0, 201);
    assert_eq!(bot.get("/api/users/123/balance").await.0, 200);
}

#[tokio::test]
async fn configured_keys_keep_working_as_front_end_keys() {
    let app = TestApp::spawn_with(&[("FLASHRENT_API_KEYS", "bot-key-1,bot-key-2")]).await;
    app.credit("7", "20", "c").await;
    let bot = Call {
        app: &app,
        key: Some("bot-key-2"),
    };
    assert_eq!(bot.post("/api/orders", order_for("7")).await.0, 201);
    let issued = issue(&app, json!({"user_id": 8})).await;
    assert_eq!(issued["user_id"], "8");
    let user8 = Call {
        app: &app,
        key: issued["key"].as_str(),
    };
    assert_eq!(user8.get("/api/users/8/balance").await.0, 200);
    assert_eq!(user8.get("/api/users/7/balance").await.0, 403);
    assert_eq!(bot.get("/api/users/8/balance").await.0, 200);
    assert_eq!(
        Call {
            app: &app,
            key: None
        }
        .get("/api/users/7/balance")
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn keys_are_listed_without_their_secret_and_a_revoked_key_is_refused() {
    let app = TestApp::spawn_with(&[("FLASHRENT_KEY_USAGE_RECORD_SECS", "1")]).await;
    let issued = issue(&app, json!({"user_id": "42", "name": "shop"})).await;
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let user = Call {
        app: &app,
        key: Some(&key),
    };
    assert_eq!(user.get("/api/users/42/balance").await.0, 200);

    // Its last use is recorded (about once a minute; here every second).
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let list = app.get_admin("/api/admin/api-keys").await;
        assert_eq!(list.status, 200);
        let k = list.body["keys"][0].clone();
        if !k["last_used_at"].is_null() {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "last use never recorded: {}",
            list.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let k = &listed.body["keys"][0];
    assert_eq!(k["id"], json!(id));
    assert_eq!(k["name"], "shop");
    assert_eq!(k["scope"], "user");
    assert_eq!(k["user_id"], "42");
    assert!(k["created_at"].is_string());
    assert!(k["revoked_at"].is_null());
    let text = listed.body.to_string();
    assert!(!text.contains(&key), "the list shows the key");
    assert!(!text.contains(&key["frk_".len()..]));
    // Not even its hash.
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(key.as_bytes()))
    };
    assert!(!text.contains(&hash));

    let r = app
        .http
        .delete(format!("{}/api/admin/api-keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked: Value = r.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(user.get("/api/users/42/balance").await.0, 401);
    // Revoking again changes nothing; an unknown or malformed id is refused.
    let again = app
        .http
        .delete(format!("{}/api/admin/api-keys/{id}", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let unknown = app
        .http
        .delete(format!(
            "{}/api/admin/api-keys/0192a0a0-0000-7000-8000-000000000000",
            app.base
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"], "api_key_not_found");
    let bad = app
        .http
        .delete(format!("{}/api/admin/api-keys/nope", app.base))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Revoking the last key does not open the routes again.
    assert_eq!(
        Call {
            app: &app,
            key: None
        }
        .get("/api/users/42/balance")
        .await
        .0,
        401
    );
    // Only the admin token manages keys.
    let r = app
        .post("/api/admin/api-keys", &json!({"user_id": "1"}))
        .await;
    assert_eq!(r.status, 401);
    let r = app
        .admin_post(
            "/api/admin/api-keys",
            &json!({"scope": "frontend", "user_id": "1"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (400, json!("invalid_field"))
    );
    let r = app.admin_post("/api/admin/api-keys", &json!({})).await;
    assert_eq!(r.status, 400);
    let r = app
        .admin_post(
            "/api/admin/api-keys",
            &json!({"scope": "root", "user_id": "1"}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn keys_live_in_the_log_as_hashes_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let app = TestApp::spawn_in(dir.path(), &[]).await;
        let issued = issue(&app, json!({"user_id": "5"})).await;
        let key = issued["key"].as_str().unwrap().to_owned();
        let r = app
            .http
            .get(format!("{}/api/users/5/balance", app.base))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let mut app = app;
        app.stop();
        key
    };
    // Nowhere in the data dir (log, read models, snapshots) is the key itself.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        let found = bytes.windows(key.len()).any(|w| w == key.as_bytes());
        assert!(!found, "the key is stored in {}", entry.display());
    }
    let app = TestApp::spawn_in(dir.path(), &[]).await;
    let with = |k: &str| {
        app.http
            .get(format!("{}/api/users/5/balance", app.base))
            .header("X-API-Key", k.to_owned())
            .send()
    };
    assert_eq!(with(&key).await.unwrap().status(), 200);
    assert_eq!(
        app.http
            .get(format!("{}/api/users/5/balance", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else if path.file_name().is_some_and(|n| n != "server.log") {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn orders_past_a_users_rate_get_429_with_retry_after_and_nothing_is_recorded() {
    let app = TestApp::spawn_with(&[("FLASHRENT_ORDER_RATE_PER_USER", "2")]).await;
    app.credit("9", "50", "c9").await;
    app.credit("10", "50", "c10").await;
    let anyone = Call {
        app: &app,
        key: None,
    };
    assert_eq!(anyone.post("/api/orders", order_for("9")).await.0, 201);
    assert_eq!(anyone.post("/api/orders", order_for("9")).await.0, 201);
    let r = app
        .http
        .post(format!("{}/api/orders", app.base))
        .json(&order_for("9"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Two payments, no third.
    let ledger = app.get("/api/users/9/ledger").await;
    assert_eq!(ledger.body["entries"].as_array().unwrap().len(), 3);
    assert_eq!(app.balance_sun("9").await, 50_000_000 - 2 * 5_850_000);
    // Another user has a quota of their own.
    assert_eq!(anyone.post("/api/orders", order_for("10")).await.0, 201);
}

#[tokio::test]
async fn a_keys_rate_counts_every_user_it_acts_for() {
    let app = TestApp::spawn_with(&[
        ("FLASHRENT_API_KEYS", "bot"),
        ("FLASHRENT_ORDER_RATE_PER_KEY", "3"),
    ])
    .await;
    let bot = Call {
        app: &app,
        key: Some("bot"),
    };
    for u in ["1", "2", "3", "4"] {
        app.credit(u, "10", &format!("c{u}")).await;
    }
    for u in ["1", "2", "3"] {
        assert_eq!(bot.post("/api/orders", order_for(u)).await.0, 201);
    }
    let (status, body) = bot.post("/api/orders", order_for("4")).await;
    assert_eq!(
        (status, body["error"].clone()),
        (429, json!("rate_limited"))
    );
    let (_, balance) = bot.get("/api/users/4/balance").await;
    assert_eq!(balance["balance_sun"], 10_000_000);
}
