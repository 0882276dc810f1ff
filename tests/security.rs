//! Secrets and network targets, against the real binary: no secret is a command-line value or
//! appears in anything the server prints, a typo in the supplier keys prints no key, the data
//! dir is private, open client routes are warned about, and a `callback_url` naming a private
//! target is refused at order creation.

mod common;

use common::{TestApp, SUPPLIER_KEY};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Every secret variable: a run sets only those it means to, whatever the tests' own
/// environment holds.
const SECRET_VARS: &[&str] = &[
    "FLASHRENT_ADMIN_TOKEN",
    "FLASHRENT_API_KEYS",
    "FLASHRENT_SUPPLIER_KEYS",
    "FLASHRENT_TRON_API_KEY",
    "FLASHRENT_KAFKA_CONFIG",
    "FLASHRENT_ADMIN_TOKEN_FILE",
    "FLASHRENT_API_KEYS_FILE",
    "FLASHRENT_SUPPLIER_KEYS_FILE",
    "FLASHRENT_TRON_API_KEY_FILE",
    "FLASHRENT_KAFKA_CONFIG_FILE",
];

/// A second supplier key of these tests (never a real wallet).
const OTHER_KEY: &str = "5d3c2b1a0918f7e6d5c4b3a29180716f5e4d3c2b1a0918f7e6d5c4b3a2918071";

/// A `flashrent serve` started directly (it may refuse to start), everything it prints kept.
struct Serve {
    child: Child,
    dir: PathBuf,
}

impl Serve {
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Serve {
        std::fs::create_dir_all(dir).unwrap();
        let data = dir.join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashrent"));
        cmd.args(["serve", "--data-dir"])
            .arg(&data)
            .args(args)
            .env("FLASHRENT_DEVNET_BLOCK_MS", "50")
            .env("FLASHRENT_POLL_MS", "20")
            .env("RUST_LOG", "info");
        // Backtraces would make a one-line error many lines.
        for v in SECRET_VARS
            .iter()
            .chain(&["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"])
        {
            cmd.env_remove(v);
        }
        cmd.envs(env.iter().copied())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr")).unwrap(),
            ));
        Serve {
            child: cmd.spawn().unwrap(),
            dir: dir.to_owned(),
        }
    }

    /// The server's base URL once it listens, or `None` when it exited first.
    fn up(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = std::fs::read_to_string(self.dir.join("stdout")).unwrap_or_default();
            if let Some(line) = out
                .lines()
                .find(|l| l.starts_with("flashrent listening on "))
            {
                return Some(line["flashrent listening on ".len()..].trim().to_owned());
            }
            if let Ok(Some(_)) = self.child.try_wait() {
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "neither up nor down: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it (SIGTERM), waits, and returns its status code and everything it printed.
    fn finish(mut self) -> (Option<i32>, String) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let status = self.child.wait().unwrap();
        (status.code(), self.output())
    }

    fn output(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stdout"), read("stderr"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pieces of `secret` to look for: the whole, and for long ones every run of 16 characters
/// (a key cut or reformatted is still a leak).
fn pieces(secret: &str) -> Vec<String> {
    let s = secret.to_ascii_lowercase();
    let mut out = vec![s.clone()];
    if s.len() > 16 {
        out.extend((0..=s.len() - 16).map(|i| s[i..i + 16].to_owned()));
    }
    out
}

fn assert_no_secret(output: &str, secrets: &[&str]) {
    for line in output.lines() {
        let l = line.to_ascii_lowercase();
        for secret in secrets {
            for p in pieces(secret) {
                assert!(!l.contains(&p), "a secret ({p}) is in this line:\n{line}");
            }
        }
    }
}

async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{base} never became healthy");
}

#[tokio::test]
async fn a_typo_in_the_supplier_keys_prints_no_key_whether_it_is_tolerated_or_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (k1, k2) = (SUPPLIER_KEY, OTHER_KEY);
    let tolerated = [
        format!("{k1},"),
        format!("{k1}\n"),
        format!("{k1},\n\n{k2}\n"),
        format!("{k1} {k2}"),
        format!("0x{k1},0x{k2},"),
    ];
    let refused = [
        (format!("\"{k1}\""), "item 1"),
        (format!("{k1},\"{k2}\""), "item 2"),
        (format!("'{k1}',{k2}"), "item 1"),
        (format!("{k1};{k2}"), "item 1"),
        (format!("{k1},{}", &k2[..63]), "item 2"),
        (format!("{k1},/etc/flashrent/keys"), "item 2"),
    ];
    for (i, value) in tolerated.iter().enumerate() {
        let mut s = Serve::start(
            &temp.path().join(format!("ok-{i}")),
            &["--listen", "127.0.0.1:0"],
            &[("FLASHRENT_SUPPLIER_KEYS", value)],
        );
        let base = s.up();
        let (_, out) = s.finish();
        assert!(base.is_some(), "{value:?} was refused:\n{out}");
        assert_no_secret(&out, &[k1, k2]);
    }
    for (i, (value, item)) in refused.iter().enumerate() {
        let mut s = Serve::start(
            &temp.path().join(format!("bad-{i}")),
            &["--listen", "127.0.0.1:0"],
            &[("FLASHRENT_SUPPLIER_KEYS", value)],
        );
        assert_eq!(s.up(), None, "{value:?} was taken");
        let (code, out) = s.finish();
        assert_eq!(code, Some(1), "{out}");
        let errors: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(errors.len(), 1, "not a one-line error:\n{out}");
        assert!(
            errors[0].starts_with("error: FLASHRENT_SUPPLIER_KEYS: ") && errors[0].contains(item),
            "{out}"
        );
        assert_no_secret(&out, &[k1, k2]);
    }
}

#[tokio::test]
async fn no_secret_appears_in_anything_the_server_prints_even_when_fed_wrong_ones() {
    let temp = tempfile::tempdir().unwrap();
    let files = temp.path().join("secrets");
    std::fs::create_dir_all(&files).unwrap();
    let admin = "adm1n-t0ken-9f8e7d6c5b4a39281706f5e4";
    let api_keys = [
        "ap1-key-one-2b3c4d5e6f708192a3b4",
        "ap1-key-two-c5d6e7f8091a2b3c4d5e",
    ];
    let tron_key = "tr0n-pr0-key-7a6b5c4d3e2f1a0b9c8d";
    let sasl = "sasl-pa55w0rd-e1f2a3b4c5d6e7f80912";
    let put = |name: &str, text: String| {
        let path = files.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let admin_file = put("admin-token", format!("{admin}\n"));
    let keys_file = put(
        "supplier-keys",
        format!("# suppliers\n{SUPPLIER_KEY}\n\n0x{OTHER_KEY}\n"),
    );
    let kafka_file = put(
        "kafka",
        format!("security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=flashrent\nsasl.password={sasl}\n"),
    );
    let api_keys_env = format!("{},{},", api_keys[0], api_keys[1]);
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // Beside the main run: the log on a Kafka that is not there, with SASL settings, gives up
    // after its timeout with librdkafka's errors in the debug log.
    let on_kafka = Serve::start(
        &temp.path().join("kafka"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--kafka",
            &closed_port,
            "--kafka-config-file",
            &kafka_file,
        ],
        &[("RUST_LOG", "debug")],
    );
    let secrets = [
        admin,
        api_keys[0],
        api_keys[1],
        tron_key,
        sasl,
        SUPPLIER_KEY,
        OTHER_KEY,
    ];
    let mut s = Serve::start(
        &temp.path().join("run"),
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin-token-file",
            &admin_file,
            "--supplier-keys-file",
            &keys_file,
            "--kafka-config-file",
            &kafka_file,
        ],
        &[
            ("RUST_LOG", "debug"),
            ("FLASHRENT_API_KEYS", &api_keys_env),
            ("FLASHRENT_TRON_API_KEY", tron_key),
        ],
    );
    let base = s
        .up()
        .unwrap_or_else(|| panic!("not started:\n{}", s.output()));
    wait_healthy(&base).await;
    let http = reqwest::Client::new();
    let admin_route = format!("{base}/api/admin/wallet-pool/wallets");
    let client_route = format!("{base}/api/users/5/balance");
    // Wrong tokens and keys, some of them near the real ones.
    for wrong in [&admin[..20], "Bearer", "", &format!("{admin}x")] {
        let r = http
            .get(&admin_route)
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    for wrong in [
        &api_keys[0][..12],
        "nope",
        &format!("{},{}", api_keys[0], api_keys[1]),
    ] {
        let r = http
            .get(&client_route)
            .header("X-API-Key", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // The real ones work, so they were read.
    let r = http
        .get(&admin_route)
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(&client_route)
        .header("X-API-Key", api_keys[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/api/admin/users/5/credit"))
        .bearer_auth(admin)
        .json(&json!({"amount_trx": 10, "reference": "sec-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let (_, out) = s.finish();
    assert!(out.contains("DEBUG"), "not a debug run:\n{out}");
    assert_no_secret(&out, &secrets);
    let mut on_kafka = on_kafka;
    assert_eq!(on_kafka.up(), None, "{}", on_kafka.output());
    let (code, out) = on_kafka.finish();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("librdkafka"), "{out}");
    assert_no_secret(&out, &secrets);

    // Refused starts: a bad key line in the file, a secret given twice, an unreadable file.
    let bad_keys = put("bad-keys", format!("{SUPPLIER_KEY}\n{OTHER_KEY}x\n"));
    let missing = files.join("missing").to_str().unwrap().to_owned();
    let bad_kafka = put("bad-kafka", format!("sasl.username=u\n{sasl}\n"));
    for (i, (args, env, says)) in [
        (
            vec!["--supplier-keys-file", bad_keys.as_str()],
            vec![],
            format!("{bad_keys}: line 2"),
        ),
        (
            vec!["--admin-token-file", admin_file.as_str()],
            vec![("FLASHRENT_ADMIN_TOKEN", admin)],
            "both FLASHRENT_ADMIN_TOKEN and --admin-token-file".to_owned(),
        ),
        (
            vec!["--supplier-keys-file", missing.as_str()],
            vec![],
            format!("cannot read --supplier-keys-file {missing}"),
        ),
        (
            vec![
                "--kafka",
                &closed_port,
                "--kafka-config-file",
                bad_kafka.as_str(),
            ],
            vec![("FLASHRENT_API_KEYS", api_keys_env.as_str())],
            format!("{bad_kafka}: line 2 is not key=value"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = args;
        args.extend(["--listen", "127.0.0.1:0"]);
        let mut env = env;
        env.push(("RUST_LOG", "debug"));
        let mut s = Serve::start(&temp.path().join(format!("bad-{i}")), &args, &env);
        assert_eq!(s.up(), None);
        let (code, out) = s.finish();
        assert_eq!(code, Some(1), "{out}");
        assert!(out.contains(&says), "{says:?} not in:\n{out}");
        assert_no_secret(&out, &secrets);
    }
}

#[test]
fn no_command_takes_a_secret_as_a_command_line_value() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    for (command, flags) in [
        (
            vec!["serve"],
            vec![
                "admin-token",
                "api-keys",
                "supplier-keys",
                "tron-api-key",
                "kafka-config",
            ],
        ),
        (vec!["rebuild"], vec!["kafka-config"]),
        (vec!["audit"], vec!["api-key", "kafka-config"]),
        (vec!["notify"], vec!["secret", "kafka-config"]),
    ] {
        let text = help(&command);
        for flag in flags {
            assert!(
                !text.contains(&format!("--{flag} <")),
                "{command:?} takes --{flag} as a value:\n{text}"
            );
            assert!(
                text.contains(&format!("--{flag}-file <")),
                "{command:?} has no --{flag}-file:\n{text}"
            );
        }
        // A file flag shows its variable's name, never a value.
        assert!(!text.contains("_FILE=/"), "{text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["serve", "--admin-token", "visible-in-ps"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unexpected argument"),
        "{out:?}"
    );
}

#[tokio::test]
async fn the_data_dir_is_created_private_and_an_open_one_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let temp = tempfile::tempdir().unwrap();
    let mut s = Serve::start(&temp.path().join("new"), &["--listen", "127.0.0.1:0"], &[]);
    let base = s.up().unwrap_or_else(|| panic!("{}", s.output()));
    wait_healthy(&base).await;
    let data = temp.path().join("new/data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin-token")), 0o600);
    let (_, out) = s.finish();
    assert!(!out.contains("open to its group or others"), "{out}");

    // A data dir made by someone else with the usual umask: left as it is, and warned about.
    let open = temp.path().join("open");
    std::fs::create_dir_all(open.join("data")).unwrap();
    std::fs::set_permissions(open.join("data"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut s = Serve::start(&open, &["--listen", "127.0.0.1:0"], &[]);
    assert!(s.up().is_some());
    let (_, out) = s.finish();
    assert!(out.contains("open to its group or others"), "{out}");

    // The quickstart's default data dir, inside a checkout, is never committed.
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l.trim() == "flashrent-data/"),
        "{ignore}"
    );
}

#[tokio::test]
async fn listening_beyond_loopback_without_api_keys_warns_that_client_routes_are_open() {
    let temp = tempfile::tempdir().unwrap();
    let warning = "client routes (orders, balances, deductions) are open";
    for (i, env, warned) in [
        (0, vec![], true),
        (1, vec![("FLASHRENT_API_KEYS", "some-key-1")], false),
    ] {
        let mut s = Serve::start(
            &temp.path().join(format!("{i}")),
            &["--listen", "0.0.0.0:0"],
            &env,
        );
        assert!(s.up().is_some(), "{}", s.output());
        let (_, out) = s.finish();
        assert_eq!(out.contains(warning), warned, "{out}");
    }
    let mut s = Serve::start(&temp.path().join("lo"), &["--listen", "127.0.0.1:0"], &[]);
    assert!(s.up().is_some());
    let (_, out) = s.finish();
    assert!(!out.contains(warning), "{out}");
}

#[tokio::test]
async fn a_callback_url_naming_a_private_target_is_refused_with_400_and_nothing_recorded() {
    let app = TestApp::spawn().await;
    app.credit("31", "100", "d-31").await;
    let ledger = "/api/users/31/ledger";
    let before = app.get(ledger).await.body["entries"].clone();
    for url in [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
        "http://2130706433/",
    ] {
        let mut body = common::seed_order_body();
        body["user_id"] = json!("31");
        body["callback_url"] = json!(url);
        let r = app.post("/api/orders", &body).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert_eq!(r.body["error"], "invalid_callback_url", "{url}");
        assert_eq!(r.body["field"], "callback_url");
    }
    assert_eq!(app.balance_sun("31").await, 100_000_000);
    assert_eq!(app.get(ledger).await.body["entries"], before);
    let orders = app.get("/api/users/31/orders").await.body["orders"].clone();
    assert_eq!(orders, Value::Array(vec![]), "{orders}");

    let mut body = common::seed_order_body();
    body["user_id"] = json!("31");
    body["callback_url"] = json!("https://example.com/hook");
    let r = app.post("/api/orders", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
}
