//! `/api/openapi.json` is generated from the code; these tests keep it from drifting: every
//! route of the route table is in it, and every error code a handler can answer is listed.

mod common;

use serde_json::Value;
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
