//! `flashrent notify` against a real local HTTP receiver: ordered delivery per order, retries
//! after 500s and timeouts, verifiable signatures, dead letters and their replay, and nothing
//! delivered twice across a restart.

mod common;

use common::TestApp;
use flashrent::notify::message::verify;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "test-webhook-secret";

#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// How the receiver answers a request to a path: a status, after a delay.
type Behaviour = Arc<dyn Fn(&str, usize) -> (u16, Duration) + Send + Sync>;

/// A tiny HTTP/1.1 receiver that records every request (one per connection).
#[derive(Clone)]
struct Receiver {
    url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Sent as `Location` with every answer (for redirects).
    location: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            hits: Arc::new(Mutex::new(Vec::new())),
            behaviour: Arc::new(Mutex::new(Arc::new(|_: &str, _: usize| {
                (200, Duration::ZERO)
            }))),
            location: Arc::new(Mutex::new(None)),
        };
        let me = r.clone();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head, body_start) = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
                        }
                    };
                    let mut lines = head.lines();
                    let path = lines
                        .next()
                        .unwrap_or("")
                        .split(' ')
                        .nth(1)
                        .unwrap_or("")
                        .to_owned();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let len: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < body_start + len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body =
                        String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
                    let nth = {
                        let mut hits = me.hits.lock().unwrap();
                        hits.push(Hit {
                            path: path.clone(),
                            headers,
                            body,
                        });
                        hits.iter().filter(|h| h.path == path).count()
                    };
                    let behaviour = me.behaviour.lock().unwrap().clone();
                    let (status, delay) = behaviour(&path, nth);
                    tokio::time::sleep(delay).await;
                    let location = match me.location.lock().unwrap().as_ref() {
                        Some(l) => format!("location: {l}\r\n"),
                        None => String::new(),
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        r
    }

    fn behave(&self, f: impl Fn(&str, usize) -> (u16, Duration) + Send + Sync + 'static) {
        *self.behaviour.lock().unwrap() = Arc::new(f);
    }

    fn redirect_to(&self, url: &str) {
        *self.location.lock().unwrap() = Some(url.to_owned());
    }

    /// Every request it got, whatever its path.
    fn all_hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    /// The bodies of the requests to `path` that were answered 2xx are not known here; this
    /// returns every request's body, parsed.
    fn bodies(&self, path: &str) -> Vec<Value> {
        self.hits(path)
            .iter()
            .map(|h| serde_json::from_str(&h.body).unwrap())
            .collect()
    }

    async fn wait_for(&self, path: &str, secs: u64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let b = self.bodies(path);
            if done(&b) {
                return b;
            }
            assert!(Instant::now() < deadline, "receiver {path} got only {b:#?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

struct Notifier(Child);

/// The tests' receivers listen on 127.0.0.1, which clients' callbacks may not reach unless
/// the operator allows private targets: `serve` and `notify` both get this.
const ALLOW_PRIVATE: (&str, &str) = ("FLASHRENT_WEBHOOK_ALLOW_PRIVATE", "1");

async fn serve() -> TestApp {
    TestApp::spawn_with(&[ALLOW_PRIVATE]).await
}

impl Notifier {
    fn start(data_dir: &Path, args: &[&str]) -> Notifier {
        Self::start_with(data_dir, args, &[ALLOW_PRIVATE])
    }

    fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Notifier {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("notify.log"))
            .unwrap();
        Notifier(
            Command::new(env!("CARGO_BIN_EXE_flashrent"))
                .arg("notify")
                .arg("--data-dir")
                .arg(data_dir)
                .args(["--backoff-ms", "50", "--backoff-max-ms", "200"])
                .args(args)
                .env("FLASHRENT_WEBHOOK_SECRET", SECRET)
                .envs(env.iter().copied())
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        )
    }

    /// Stops it as an operator would (SIGTERM: it finishes the deliveries in flight).
    /// Waits without blocking the test's runtime, which also runs the receivers: a
    /// delivery in flight needs its answer to finish.
    async fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        while matches!(self.0.try_wait(), Ok(None)) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(data_dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .arg("notify")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn order_with_callback(
    app: &TestApp,
    user: &str,
    callback: &str,
    out_trade_no: &str,
) -> String {
    let mut body = common::seed_order_body();
    body["user_id"] = json!(user);
    body["callback_url"] = json!(callback);
    body["out_trade_no"] = json!(out_trade_no);
    let r = app.post("/api/orders", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["order_id"].as_str().unwrap().to_owned()
}

fn events_of(bodies: &[Value], order: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for b in bodies.iter().filter(|b| b["order_id"] == order) {
        let e = b["event"].as_str().unwrap().to_owned();
        // A retried event may come more than once; keep the first of each.
        if !seen.contains(&e) {
            seen.push(e);
        }
    }
    seen
}

#[tokio::test]
async fn every_order_event_is_delivered_in_order_signed_to_its_callback_and_the_global_url() {
    let app = serve().await;
    let rx = Receiver::start().await;
    let global = format!("{}/global", rx.url);
    let _n = Notifier::start(&app.data_dir, &["--webhook-url", &global]);
    app.credit("7", "100", "d-7").await;
    let a = order_with_callback(&app, "7", &format!("{}/cb", rx.url), "shop-a").await;
    let b = order_with_callback(&app, "7", &format!("{}/cb", rx.url), "shop-b").await;
    app.wait_final(&a).await;
    app.wait_final(&b).await;
    let want = ["order.paid", "order.processing", "order.completed"];
    let done = |bodies: &[Value]| [&a, &b].iter().all(|o| events_of(bodies, o).len() >= 3);
    let cb = rx.wait_for("/cb", 20, done).await;
    let gl = rx.wait_for("/global", 20, done).await;
    for o in [&a, &b] {
        assert_eq!(events_of(&cb, o), want);
        assert_eq!(events_of(&gl, o), want);
    }
    let first = &cb.iter().find(|x| x["order_id"] == a.as_str()).unwrap();
    assert_eq!(first["out_trade_no"], "shop-a");
    assert_eq!(first["user_id"], "7");
    assert_eq!(first["data"]["amount_sun"], 5_850_000);
    for h in rx.hits("/cb") {
        let sig = h.headers.get("x-flashrent-signature").unwrap();
        assert!(
            verify(SECRET.as_bytes(), h.body.as_bytes(), sig),
            "bad signature {sig}"
        );
        assert!(!verify(b"wrong", h.body.as_bytes(), sig));
        let body: Value = serde_json::from_str(&h.body).unwrap();
        assert_eq!(
            h.headers.get("idempotency-key").unwrap(),
            body["event_id"].as_str().unwrap()
        );
    }
}

#[tokio::test]
async fn a_receiver_answering_500s_or_timing_out_gets_retries_and_does_not_hold_up_another() {
    let app = serve().await;
    let rx = Receiver::start().await;
    // /flaky fails twice with 500, then times out once, then accepts.
    rx.behave(|path, nth| match (path, nth) {
        ("/flaky", 1 | 2) => (500, Duration::ZERO),
        ("/flaky", 3) => (200, Duration::from_secs(3)),
        _ => (200, Duration::ZERO),
    });
    let global = format!("{}/steady", rx.url);
    let _n = Notifier::start(
        &app.data_dir,
        &["--webhook-url", &global, "--timeout-ms", "700"],
    );
    app.credit("8", "100", "d-8").await;
    let a = order_with_callback(&app, "8", &format!("{}/flaky", rx.url), "x").await;
    app.wait_final(&a).await;
    let started = Instant::now();
    let steady = rx
        .wait_for("/steady", 20, |b| events_of(b, &a).len() >= 3)
        .await;
    let steady_took = started.elapsed();
    let flaky = rx
        .wait_for("/flaky", 30, |b| events_of(b, &a).len() >= 3)
        .await;
    assert_eq!(
        events_of(&steady, &a),
        ["order.paid", "order.processing", "order.completed"]
    );
    assert_eq!(
        events_of(&flaky, &a),
        ["order.paid", "order.processing", "order.completed"]
    );
    // The first event was tried four times (500, 500, timeout, 200), with the same key.
    let paid: Vec<_> = rx
        .hits("/flaky")
        .into_iter()
        .filter(|h| h.body.contains("order.paid"))
        .collect();
    assert!(paid.len() >= 4, "{} attempts", paid.len());
    assert!(paid
        .windows(2)
        .all(|w| w[0].headers["idempotency-key"] == w[1].headers["idempotency-key"]));
    assert!(
        steady_took < Duration::from_secs(3),
        "the steady receiver waited {steady_took:?}"
    );
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_dead_lettered_and_can_be_replayed() {
    let app = serve().await;
    let rx = Receiver::start().await;
    rx.behave(|path, _| {
        if path == "/down" {
            (503, Duration::ZERO)
        } else {
            (200, Duration::ZERO)
        }
    });
    let _n = Notifier::start(&app.data_dir, &["--max-attempts", "2"]);
    app.credit("9", "100", "d-9").await;
    let a = order_with_callback(&app, "9", &format!("{}/down", rx.url), "dl").await;
    app.wait_final(&a).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listing = loop {
        let out = cli(&app.data_dir, &["dead-letters", "list"]);
        if out.contains("3 dead letters") {
            break out;
        }
        assert!(Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        listing.contains("order.paid") && listing.contains("503"),
        "{listing}"
    );
    assert_eq!(rx.hits("/down").len(), 6);

    rx.behave(|_, _| (200, Duration::ZERO));
    let out = cli(&app.data_dir, &["dead-letters", "replay", "--all"]);
    assert!(out.contains("3 dead letters queued"), "{out}");
    rx.wait_for("/down", 20, |b| b.len() >= 9).await;
    assert!(cli(&app.data_dir, &["dead-letters", "list"]).contains("0 dead letters"));
    let replayed: Vec<String> = rx.bodies("/down")[6..]
        .iter()
        .map(|b| b["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(replayed.len(), 3);
    for e in ["order.paid", "order.processing", "order.completed"] {
        assert!(replayed.iter().any(|r| r == e), "{replayed:?}");
    }
}

#[tokio::test]
async fn a_restarted_notifier_delivers_nothing_it_already_delivered() {
    let app = serve().await;
    let rx = Receiver::start().await;
    let global = format!("{}/all", rx.url);
    let metrics = app.data_dir.join("notify.prom");
    let mut n = Notifier::start(
        &app.data_dir,
        &[
            "--webhook-url",
            &global,
            "--metrics-file",
            metrics.to_str().unwrap(),
        ],
    );
    app.credit("10", "100", "d-10").await;
    let a = order_with_callback(&app, "10", &format!("{}/cb", rx.url), "r1").await;
    app.wait_final(&a).await;
    rx.wait_for("/all", 20, |b| events_of(b, &a).len() >= 3)
        .await;
    n.stop().await;
    let before = rx.hits("/all").len();
    let prom = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        prom.contains("flashrent_notify_lag_records{partition=\"0\"}"),
        "{prom}"
    );
    assert!(prom.contains("flashrent_notify_dead_letters 0"), "{prom}");

    let _n2 = Notifier::start(&app.data_dir, &["--webhook-url", &global]);
    let b = order_with_callback(&app, "10", &format!("{}/cb", rx.url), "r2").await;
    app.wait_final(&b).await;
    let all = rx
        .wait_for("/all", 20, |x| events_of(x, &b).len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all_now = rx.bodies("/all");
    assert_eq!(all_now.len(), all.len());
    assert_eq!(all_now.len(), before + 3, "{all_now:#?}");
    let ids: std::collections::HashSet<_> = all_now
        .iter()
        .map(|b| b["event_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), all_now.len(), "an event was delivered twice");
}

#[tokio::test]
async fn a_bad_callback_url_or_out_trade_no_is_refused_with_400_and_nothing_recorded() {
    let app = serve().await;
    app.credit("11", "100", "d-11").await;
    for (field, value) in [
        ("callback_url", json!("ftp://example.com/x")),
        ("callback_url", json!("not a url")),
        ("out_trade_no", json!("")),
        ("out_trade_no", json!("x".repeat(65))),
    ] {
        let mut body = common::seed_order_body();
        body["user_id"] = json!("11");
        body[field] = value;
        let r = app.post("/api/orders", &body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.body["error"], "invalid_field");
        assert_eq!(r.body["field"], field);
    }
    assert_eq!(app.balance_sun("11").await, 100_000_000);
}

/// Waits until `notify dead-letters list` shows `n` dead letters, and returns the listing.
async fn wait_dead_letters(data_dir: &Path, n: usize, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = cli(data_dir, &["dead-letters", "list"]);
        if out.contains(&format!("\n{n} dead letters")) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "{out}\n--- notify.log:\n{}",
            std::fs::read_to_string(data_dir.join("notify.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_callback_that_resolves_to_a_private_address_is_dead_lettered_at_once_and_never_contacted(
) {
    // The order is taken by a server that allows private callbacks, as one that did before
    // this rule may have; the notifier does not allow them.
    let app = serve().await;
    let rx = Receiver::start().await;
    let port = rx.url.rsplit(':').next().unwrap().to_owned();
    let _n = Notifier::start_with(&app.data_dir, &[], &[]);
    app.credit("12", "100", "d-12").await;
    // `localhost` is a name: the resolver finds 127.0.0.1 (and ::1) and refuses them.
    let by_name =
        order_with_callback(&app, "12", &format!("http://localhost:{port}/named"), "n").await;
    let by_literal =
        order_with_callback(&app, "12", &format!("http://127.0.0.1:{port}/literal"), "l").await;
    app.wait_final(&by_name).await;
    app.wait_final(&by_literal).await;
    let listing = wait_dead_letters(&app.data_dir, 6, 20).await;
    assert!(
        listing.contains("the target resolves to a private address"),
        "{listing}"
    );
    assert!(
        listing.contains("the target is a private address"),
        "{listing}"
    );
    // Each given up on its first attempt: retrying leads to the same address.
    let attempts: Vec<&str> = listing
        .lines()
        .filter(|l| l.contains("order."))
        .map(|l| l.split_whitespace().nth(3).unwrap())
        .collect();
    assert_eq!(attempts, vec!["1"; 6], "{listing}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.all_hits().is_empty(), "{:?}", rx.all_hits());
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_counts_as_a_failed_attempt() {
    let app = serve().await;
    let first = Receiver::start().await;
    let second = Receiver::start().await;
    first.behave(|_, _| (302, Duration::ZERO));
    first.redirect_to(&format!("{}/stolen", second.url));
    let _n = Notifier::start(&app.data_dir, &["--max-attempts", "2"]);
    app.credit("13", "100", "d-13").await;
    let a = order_with_callback(&app, "13", &format!("{}/moved", first.url), "r").await;
    app.wait_final(&a).await;
    let listing = wait_dead_letters(&app.data_dir, 3, 20).await;
    assert!(listing.contains("302"), "{listing}");
    assert_eq!(first.hits("/moved").len(), 6);
    assert!(second.all_hits().is_empty(), "{:?}", second.all_hits());
}

#[tokio::test]
async fn a_callback_url_with_credentials_is_never_logged_or_listed_whole() {
    let app = serve().await;
    let rx = Receiver::start().await;
    rx.behave(|_, _| (500, Duration::ZERO));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _n = Notifier::start(&app.data_dir, &["--max-attempts", "2"]);
    app.credit("14", "100", "d-14").await;
    let answering = rx.url.replace("http://", "http://hook-user:pa55w0rd-x@");
    let a = order_with_callback(
        &app,
        "14",
        &format!("{answering}/cred?token=T0KEN-SECRET-1"),
        "c1",
    )
    .await;
    let b = order_with_callback(
        &app,
        "14",
        &format!("http://hook-user:pa55w0rd-x@127.0.0.1:{closed}/gone?token=T0KEN-SECRET-1"),
        "c2",
    )
    .await;
    app.wait_final(&a).await;
    app.wait_final(&b).await;
    let listing = wait_dead_letters(&app.data_dir, 6, 30).await;
    // The receiver got the URL whole: only what is shown is cut.
    let hit = rx.all_hits().into_iter().next().expect("a request");
    assert_eq!(hit.path, "/cred?token=T0KEN-SECRET-1");
    let log = std::fs::read_to_string(app.data_dir.join("notify.log")).unwrap();
    assert!(log.contains("delivery dead-lettered"), "{log}");
    assert!(
        listing.contains(&format!("http://127.0.0.1:{closed}/gone")),
        "{listing}"
    );
    for text in [&listing, &log] {
        for secret in ["pa55w0rd-x", "T0KEN-SECRET-1", "hook-user"] {
            assert!(!text.contains(secret), "{secret} shown in:\n{text}");
        }
    }
}

#[tokio::test]
async fn a_failed_order_tells_its_client_and_webhook_our_reason_never_the_nodes_text() {
    // Every delegation fails in its block, with the node's own text as the reason.
    let app = TestApp::spawn_with(&[
        ("FLASHRENT_DEVNET_FAILURE_RATE", "1"),
        ("FLASHRENT_WEBHOOK_ALLOW_PRIVATE", "1"),
    ])
    .await;
    let rx = Receiver::start().await;
    let _n = Notifier::start(&app.data_dir, &[]);
    app.credit("9", "10", "d-9").await;
    let id = order_with_callback(&app, "9", &format!("{}/cb", rx.url), "shop-f").await;
    let o = app.wait_final(&id).await;
    assert_eq!(o["status"], "refunded", "{o}");
    assert_eq!(o["failure_reason"], "delegation_failed");
    assert_eq!(
        o["failure_message"],
        "the chain did not take the energy delegation"
    );
    let cb = rx
        .wait_for("/cb", 20, |b| {
            events_of(b, &id).contains(&"order.failed".into())
        })
        .await;
    let failed = cb.iter().find(|b| b["event"] == "order.failed").unwrap();
    assert_eq!(
        failed["data"],
        json!({"failure_reason": "delegation_failed", "failure_message": "the chain did not take the energy delegation"})
    );
    for body in rx
        .hits("/cb")
        .iter()
        .map(|h| &h.body)
        .chain([&o.to_string()])
    {
        assert!(
            !body.contains("devnet fault"),
            "a node's text got out: {body}"
        );
    }
    // The node's text is still the operators': in the log.
    assert!(app.log_tail(200).contains("devnet fault: failed on chain"));
}
