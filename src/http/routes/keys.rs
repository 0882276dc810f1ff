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
use serde_json::{json, Value};

#[derive(Deserialize, utoipa::ToSchema)]
struct IssueKey {
    /// The user the key acts for (a user key); absent for a front-end key.
    #[schema(value_type = Option<String>)]
    user_id: Option<Value>,
    /// `user` (the default with a `user_id`) or `frontend` (a trusted front end that acts for
    /// any user, such as the operator's bot).
    scope: Option<String>,
    /// What the key is for, shown in the list (1 to 64 visible characters).
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/admin/api-keys",
    tag = "admin",
    request_body = IssueKey,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Issued; `key` is shown only in this answer", body = crate::http::openapi::IssuedKey),
        (status = 400, description = "Malformed input (invalid_json, invalid_field, invalid_user_id)", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token", body = crate::http::openapi::ErrorBody),
        (status = 413, description = "payload_too_large: body over 16 KiB", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "service_unavailable: the event log cannot take writes (Retry-After)", body = crate::http::openapi::ErrorBody),
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
            user_id: super::orders::user_field(user)?,
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
    let name = match b.name.as_deref().map(str::trim) {
        None => None,
        Some(n)
            if !n.is_empty() && n.chars().count() <= 64 && n.chars().all(|c| !c.is_control()) =>
        {
            Some(n.to_owned())
        }
        Some(_) => {
            return Err(bad(
                "name",
                "name 必须是 1 到 64 个可见字符",
                "name must be 1 to 64 visible characters",
            ))
        }
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
        (status = 401, description = "unauthorized: missing or wrong admin token", body = crate::http::openapi::ErrorBody),
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
    params(("key_id" = String, Path, description = "The key's id (a UUID)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Revoked (or revoked already)", body = crate::http::openapi::KeyView),
        (status = 400, description = "invalid_key_id", body = crate::http::openapi::ErrorBody),
        (status = 401, description = "unauthorized: missing or wrong admin token", body = crate::http::openapi::ErrorBody),
        (status = 404, description = "api_key_not_found", body = crate::http::openapi::ErrorBody),
        (status = 503, description = "service_unavailable: the event log cannot take writes (Retry-After)", body = crate::http::openapi::ErrorBody),
    ),
)]
pub async fn revoke(
    _: Admin,
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Reply {
    let key_id = ApiKeyId::parse(&path).map_err(|_| {
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
