//! API keys per account (operator routes): issue, list, revoke.

use super::{meta, Reply};
use crate::domain::keys::Command;
use crate::http::access;
use crate::http::error::ApiError;
use crate::http::extract::{self, Admin};
use crate::http::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use flashrent_events::{ApiKeyId, KeyScope};
use serde::Deserialize;
use serde_json::{json, value::RawValue, Value};

/// A user key names its `user_id` (and `scope` `user` or none); a front-end key has
/// `scope` `frontend` and no `user_id`. Its schema is `IssueKey` in `openapi.rs` (a union
/// utoipa cannot derive).
#[derive(Deserialize)]
struct IssueKey {
    user_id: Option<Box<RawValue>>,
    scope: Option<String>,
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/admin/api-keys",
    tag = "admin",
    request_body = crate::http::openapi::IssueKeyBody,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Issued; `key` is shown only in this answer", body = crate::http::openapi::IssuedKey),
        (status = 400, description = "invalid_user_id"),
        (status = 409, description = "api_key_exists"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn issue(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Reply {
    let b: IssueKey = extract::json_body(&body)?;
    let bad = |field: &str, zh: &str, en: &str| {
        ApiError::bad_request("invalid_field", zh.to_owned(), en.to_owned())
            .with("field", field.into())
    };
    let scope = match (b.scope.as_deref(), &b.user_id) {
        (Some("frontend"), None) => KeyScope::Frontend,
        (Some("user") | None, Some(user)) => KeyScope::User {
            user_id: extract::user_field(user)?,
        },
        (Some("frontend"), Some(_)) => {
            return Err(bad(
                "user_id",
                "前端密钥不属于某个用户，不能带 user_id",
                "a frontend key acts for any user: give no user_id",
            ))
        }
        (Some("user") | None, None) => {
            return Err(bad(
                "user_id",
                "用户密钥需要 user_id",
                "a user key needs the user_id it acts for",
            ))
        }
        (Some(_), _) => {
            return Err(bad(
                "scope",
                "scope 必须是 user 或 frontend",
                "scope must be user or frontend",
            ))
        }
    };
    let name =
        match b.name.as_deref() {
            None => None,
            Some(n) if extract::key_name(n) => Some(n.to_owned()),
            Some(_) => return Err(bad(
                "name",
                "name 必须是 1 到 64 个字符，不含控制字符，首尾不能是空白",
                "name must be 1 to 64 characters, no control characters, no spaces first or last",
            )),
        };
    let key = access::generate_key();
    let key_id = ApiKeyId::new_v7();
    let m = meta(&req);
    let command = Command::Create {
        key_id,
        scope,
        name: name.clone(),
        key_hash: access::key_hash(&key),
    };
    let done = state.engine.api_key_command(m, command).await?;
    crate::consistency::projected(&state.models, &done).await;
    state.keys_issued.set();
    let mut answer = json!({
        "id": key_id,
        "key": key,
        "name": name,
        "created_at": m.now,
    });
    insert_scope(&mut answer, scope);
    Ok(HttpResponse::Created().json(answer))
}

fn insert_scope(body: &mut Value, scope: KeyScope) {
    if let (Value::Object(o), Value::Object(s)) = (body, json!(scope)) {
        o.extend(s);
    }
}

#[utoipa::path(
    get,
    path = "/api/admin/api-keys",
    tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every key issued, revoked ones too (never a key itself)", body = crate::http::openapi::KeyList),
    ),
)]
pub async fn list(_: Admin, state: web::Data<AppState>) -> Reply {
    let keys = state.models.api_keys()?;
    Ok(HttpResponse::Ok().json(json!({ "keys": keys })))
}

#[utoipa::path(
    delete,
    path = "/api/admin/api-keys/{key_id}",
    tag = "admin",
    params(("key_id" = crate::http::openapi::KeyIdParam, Path)),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Revoked (or revoked already)", body = crate::http::openapi::KeyView),
        (status = 400, description = "invalid_key_id"),
        (status = 404, description = "api_key_not_found"),
        (status = 503, description = "service_unavailable"),
    ),
)]
pub async fn revoke(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    let key_id = ApiKeyId::parse(&path)
        .ok()
        .filter(|_| extract::is_hyphenated_uuid(&path))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_key_id",
                format!("API 密钥 ID 格式无效: {}", path.as_str()),
                format!("invalid API key id: {}", path.as_str()),
            )
        })?;
    let done = state
        .engine
        .api_key_command(meta(&req), Command::Revoke { key_id })
        .await?;
    crate::consistency::projected(&state.models, &done).await;
    let view = state
        .models
        .api_keys()?
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or_else(|| ApiError::internal("revoked key missing from the read model"))?;
    Ok(HttpResponse::Ok().json(view))
}
