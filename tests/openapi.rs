//! `/api/openapi.json` is generated from the code; these tests keep it from drifting: every
//! route of the route table is in it, and every error code a handler can answer is listed.

mod common;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// (method, path) of every route in `src/http/mod.rs`: each `resource("…")` with its
/// `.route(get()…)` / `.route(post()…)` calls, under the `scope("…")` prefixes around it.
fn route_table() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .unwrap();
    let start = src.find("pub fn configure").unwrap();
    let flat: String = src[start..].split_whitespace().collect::<Vec<_>>().join("");
    let body = &flat[..flat.find("default_service").unwrap()];
    let bytes = body.as_bytes();
    let literal_at = |i: usize| -> String { body[i..].chars().take_while(|c| *c != '"').collect() };
    let mut out = BTreeSet::new();
    // (prefix, paren depth at which its scope ends)
    let mut scopes: Vec<(String, usize)> = Vec::new();
    let mut resource: Option<(String, usize)> = None;
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let rest = &body[i..];
        if rest.starts_with("scope(\"") {
            scopes.push((literal_at(i + 7), depth));
        } else if rest.starts_with("resource(\"") {
            let prefix: String = scopes.iter().map(|(p, _)| p.as_str()).collect();
            resource = Some((format!("{prefix}{}", literal_at(i + 10)), depth));
        } else if let Some(r) = rest.strip_prefix(".route(") {
            if let Some((path, _)) = &resource {
                let method: String = r.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
                out.insert((method, path.clone()));
            }
        }
        match bytes[i] {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if resource.as_ref().is_some_and(|(_, d)| depth < *d) {
                    resource = None;
                }
                while scopes.last().is_some_and(|(_, d)| depth < *d) {
                    scopes.pop();
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Every error code passed to `ApiError::new`, `ApiError::bad_request` or mapped from a status.
fn error_codes_in_source() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("openapi.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            for marker in ["ApiError::new(", "bad_request(", "=> (\""] {
                for (i, _) in src.match_indices(marker) {
                    let after = &src[i + marker.len() - usize::from(marker.ends_with('"'))..];
                    let window = &after[..after.len().min(200)];
                    let Some(q) = window.find('"') else { continue };
                    let lit: String = window[q + 1..].chars().take_while(|c| *c != '"').collect();
                    if !lit.is_empty() && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                        codes.insert(lit);
                    }
                }
            }
        }
    }
    codes
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_every_error_code() {
    let app = common::TestApp::spawn().await;
    let r = app.get("/api/openapi.json").await;
    assert_eq!(r.status, 200);
    let doc: Value = r.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let routes = route_table();
    assert!(routes.len() >= 18, "{routes:?}");
    for (method, path) in &routes {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is routed but not in the OpenAPI document"
        );
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.len(),
        "the document has operations the router does not"
    );

    let listed: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let used = error_codes_in_source();
    assert!(
        used.contains("insufficient_balance") && used.contains("unauthorized"),
        "{used:?}"
    );
    let missing: Vec<_> = used.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "error codes not in the OpenAPI ErrorCode: {missing:?}"
    );

    // Request bodies come from the structs the handlers parse.
    let create = &doc["paths"]["/api/orders"]["post"];
    assert!(create["requestBody"].is_object());
    let schema = &doc["components"]["schemas"]["CreateOrder"]["properties"];
    for field in [
        "user_id",
        "energy_amount",
        "duration",
        "receive_address",
        "cost_trx",
        "callback_url",
        "out_trade_no",
    ] {
        assert!(
            schema.get(field).is_some(),
            "CreateOrder lacks {field}: {schema}"
        );
    }
    assert!(create["responses"]["402"].is_object());
}

/// (code, status) of every `ApiError::new(StatusCode::…, "code"`, `ApiError::new(conflict,
/// "code"`, `bad_request("code"` and `404 => ("code"` in the source.
fn statuses_in_source() -> BTreeSet<(String, u16)> {
    let named = [
        ("BAD_REQUEST", 400),
        ("UNAUTHORIZED", 401),
        ("PAYMENT_REQUIRED", 402),
        ("FORBIDDEN", 403),
        ("NOT_FOUND", 404),
        ("METHOD_NOT_ALLOWED", 405),
        ("REQUEST_TIMEOUT", 408),
        ("CONFLICT", 409),
        ("PAYLOAD_TOO_LARGE", 413),
        ("UNSUPPORTED_MEDIA_TYPE", 415),
        ("UNPROCESSABLE_ENTITY", 422),
        ("TOO_MANY_REQUESTS", 429),
        ("INTERNAL_SERVER_ERROR", 500),
        ("BAD_GATEWAY", 502),
        ("SERVICE_UNAVAILABLE", 503),
    ];
    let mut out = BTreeSet::new();
    let mut stack = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("openapi.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).unwrap();
            let code_after = |at: usize| -> Option<(String, usize)> {
                let q = src[at..].find('"')? + at;
                let lit: String = src[q + 1..].chars().take_while(|c| *c != '"').collect();
                let ok = !lit.is_empty() && lit.chars().all(|c| c.is_ascii_lowercase() || c == '_');
                ok.then_some((lit, q))
            };
            for (i, _) in src.match_indices("ApiError::new(") {
                let start = i + "ApiError::new(".len();
                let Some((code, q)) = code_after(start) else {
                    continue;
                };
                let head = &src[start..q];
                let status = if head.trim().trim_end_matches(',').trim() == "conflict" {
                    Some(409)
                } else {
                    named
                        .iter()
                        .find(|(n, _)| head.contains(&format!("StatusCode::{n}")))
                        .map(|(_, s)| *s)
                };
                if let Some(status) = status {
                    out.insert((code, status));
                }
            }
            for (i, _) in src.match_indices("bad_request(") {
                let start = i + "bad_request(".len();
                if let Some((code, q)) = code_after(start) {
                    if src[start..q].trim().is_empty() {
                        out.insert((code, 400));
                    }
                }
            }
            // `404 => ("not_found", …)`: a status alone on its line before the arm.
            for (i, _) in src.match_indices(" => (") {
                let line = src[..i].rsplit('\n').next().unwrap_or_default().trim();
                let Ok(status) = line.parse::<u16>() else {
                    continue;
                };
                let start = i + " => (".len();
                if let Some((code, q)) = code_after(start) {
                    if src[start..q].trim().is_empty() {
                        out.insert((code, status));
                    }
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_error_code_is_documented_with_the_status_the_source_answers_it_with() {
    let app = common::TestApp::spawn().await;
    let doc = app.get("/api/openapi.json").await.body;
    let found = statuses_in_source();
    for code in [
        "insufficient_balance",
        "amount_mismatch",
        "not_found",
        "method_not_allowed",
        "invalid_user_id",
    ] {
        assert!(
            found.iter().any(|(c, _)| c == code),
            "{code} not found in {found:?}"
        );
    }
    for (code, status) in &found {
        let schema = &doc["components"]["schemas"][format!("Error.{code}")];
        assert_eq!(
            schema["x-status"].as_u64(),
            Some(u64::from(*status)),
            "{code} is answered with {status} in the source but documented as {}",
            schema["x-status"]
        );
    }
    // Each operation's error responses are the bodies of the codes at that status.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.as_str() < "400" {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"];
                let refs: Vec<&str> = match schema["oneOf"].as_array() {
                    Some(alts) => alts.iter().map(|a| a["$ref"].as_str().unwrap()).collect(),
                    None => vec![schema["$ref"].as_str().unwrap()],
                };
                for r in refs {
                    let name = r.rsplit('/').next().unwrap();
                    assert_eq!(
                        doc["components"]["schemas"][name]["x-status"].to_string(),
                        *status,
                        "{method} {path} {status}: {name}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_document_states_the_bounds_durations_and_credentials_this_server_runs_with() {
    let app = common::TestApp::spawn_with(&[
        ("FLASHRENT_MIN_ENERGY", "20000"),
        ("FLASHRENT_MAX_ENERGY", "500000"),
        ("FLASHRENT_PRICES", "2h=100,30m=40"),
    ])
    .await;
    let doc = app.get("/api/openapi.json").await.body;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["OrderEnergy"]["minimum"], 20000);
    assert_eq!(schemas["OrderEnergy"]["maximum"], 500000);
    let mut offered: Vec<&str> = schemas["OfferedDuration"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    offered.sort_unstable();
    assert_eq!(offered, ["2h", "30m"]);
    // Open client routes: a request without credentials is one of the alternatives.
    let security = &doc["paths"]["/api/orders"]["post"]["security"];
    assert!(
        security.as_array().unwrap().contains(&json!({})),
        "{security}"
    );
    // And what the document says is what the server does.
    let order = |energy: u64, duration: &str| {
        format!(
            r#"{{"user_id":"5","energy_amount":{energy},"duration":"{duration}","receive_address":"{}"}}"#,
            common::RENTER
        )
    };
    let r = app.post_raw("/api/orders", &order(19999, "2h"), &[]).await;
    assert_eq!(r.body["error"], "energy_out_of_range");
    let r = app.post_raw("/api/orders", &order(20000, "1h"), &[]).await;
    assert_eq!(r.body["error"], "duration_not_offered");
    let r = app.post_raw("/api/orders", &order(20000, "30m"), &[]).await;
    assert_eq!(r.body["error"], "insufficient_balance", "{}", r.body);

    let keyed = common::TestApp::spawn_with(&[("FLASHRENT_API_KEYS", "k-1")]).await;
    let doc = keyed.get("/api/openapi.json").await.body;
    assert_eq!(
        doc["paths"]["/api/orders"]["post"]["security"],
        json!([{"api_key": []}])
    );
    assert_eq!(
        doc["paths"]["/api/admin/api-keys"]["get"]["security"],
        json!([{"admin_token": []}])
    );
}
