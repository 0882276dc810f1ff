//! A mistake at startup (no broker at the address given, a missing file, a bad flag, a port
//! taken) stops `serve` with one line on stderr that says what is wrong and what to do:
//! no backtrace, even with `RUST_BACKTRACE=1`, and none of librdkafka's own retries.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `serve` with `args` on a fresh data dir; its exit code and stderr. Fails if it has
/// not exited within a minute.
fn serve(args: &[&str]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flashrent"))
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env("FLASHRENT_LISTEN", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LOG", "info")
        .env("FLASHRENT_ADMIN_TOKEN", "test-admin-token")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve {args:?} was still running a minute later");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

/// The one error line of `stderr`, after checking it is the only one and nothing else in
/// it is an error, a panic or a backtrace.
fn the_error_line(stderr: &str) -> &str {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    for bad in ["ERROR", "backtrace", "panicked"] {
        assert!(!stderr.contains(bad), "{bad:?} on stderr:\n{stderr}");
    }
    errors[0]
}

#[test]
fn no_kafka_broker_at_the_address_given_is_one_line_naming_it_and_the_flag() {
    let (code, stderr) = serve(&["--kafka", "127.0.0.1:1"]);
    assert_eq!(code, Some(1));
    let line = the_error_line(&stderr);
    assert!(
        line.contains("127.0.0.1:1") && line.contains("--kafka"),
        "{line}"
    );
    assert!(!stderr.contains("librdkafka"), "{stderr}");
}

#[test]
fn a_missing_supplier_keys_file_is_one_line_naming_the_path() {
    let (code, stderr) = serve(&["--supplier-keys-file", "/nonexistent/supplier-keys"]);
    assert_eq!(code, Some(1));
    let line = the_error_line(&stderr);
    assert!(
        line.contains("--supplier-keys-file") && line.contains("/nonexistent/supplier-keys"),
        "{line}"
    );
}

#[test]
fn a_flag_that_does_not_exist_is_one_line_and_the_usage() {
    let (code, stderr) = serve(&["--no-such-flag"]);
    assert_eq!(code, Some(2));
    let line = the_error_line(&stderr);
    assert!(line.contains("--no-such-flag"), "{line}");
}

#[test]
fn a_port_already_taken_is_one_line_naming_it_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, stderr) = serve(&["--listen", &address]);
    assert_eq!(code, Some(1));
    let line = the_error_line(&stderr);
    assert!(
        line.contains(&address) && line.contains("--listen"),
        "{line}"
    );
}
