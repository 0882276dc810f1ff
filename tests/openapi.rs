//! `/api/openapi.json` is generated from the code; these tests keep it from drifting: every
//! route of the route table is in it, and every error code a handler can answer is listed.

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// (method, path) of every route in `src/http/mod.rs` (routes after `web::scope("/api")` get
/// the `/api` prefix).
fn route_table() -> BTreeSet<(String, String)> {
    let src =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/mod.rs"))
            .unwrap();
    let flat: String = src.split_whitespace().collect::<Vec<_>>().join("");
    let scope_at = flat.find("web::scope(\"/api\")").unwrap();
    let mut out = BTreeSet::new();
    let mut rest = flat.as_str();
    let mut consumed = 0;
    while let Some(i) = rest.find(".route(\"") {
        let after = &rest[i + 8..];
        let end = after.find('"').unwrap();
        let path = &after[..end];
        let m = after.find("web::").unwrap();
        let method: String = after[m + 5..]
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        let prefix = if consumed + i > scope_at { "/api" } else { "" };
        out.insert((method, format!("{prefix}{path}")));
        consumed += i + 8;
        rest = after;
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
