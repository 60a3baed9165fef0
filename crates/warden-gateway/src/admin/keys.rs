//! `GET/POST /admin/keys`, `DELETE /admin/keys/{id}`, `GET/POST /admin/routes`,
//! `DELETE /admin/routes/{name}`, `GET/PUT/DELETE /admin/limits`: API keys, routes and rate
//! limits managed through the admin API (see `live/managed.rs`). A change is checked with the
//! whole config exactly as `warden check` checks it, written to `admin.keys_file`, then served
//! — all or nothing; the config file's own keys and routes are refused here (409: change them
//! in the file).

use axum::http::StatusCode;
use serde_json::json;
use warden_config::{ApiKeyConfig, LimitsConfig, RouteConfig};

use super::Admin;
use super::handlers::{Handled, ok};
use crate::live::{KeyChangeError, LiveReport};

pub(super) fn list(admin: &Admin) -> Handled {
    ok(
        StatusCode::OK,
        json!({ "keys": admin.0.live.keys() }),
        "list_keys",
    )
}

pub(super) async fn add(admin: &Admin, key: ApiKeyConfig) -> Handled {
    let id = key.id.clone();
    let live = admin.0.live.clone();
    let done = tokio::task::spawn_blocking(move || live.add_key(key)).await;
    answer(done, StatusCode::CREATED, format!("add_key:{id}"))
}

pub(super) async fn remove(admin: &Admin, id: String) -> Handled {
    let live = admin.0.live.clone();
    let action = format!("disable_key:{id}");
    let done = tokio::task::spawn_blocking(move || live.remove_key(&id)).await;
    answer(done, StatusCode::OK, action)
}

pub(super) fn list_routes(admin: &Admin) -> Handled {
    ok(
        StatusCode::OK,
        json!({ "routes": admin.0.live.routes() }),
        "list_routes",
    )
}

pub(super) async fn add_route(admin: &Admin, route: RouteConfig) -> Handled {
    let name = route.name.clone();
    let live = admin.0.live.clone();
    let done = tokio::task::spawn_blocking(move || live.add_route(route)).await;
    answer(done, StatusCode::CREATED, format!("add_route:{name}"))
}

pub(super) async fn remove_route(admin: &Admin, name: String) -> Handled {
    let live = admin.0.live.clone();
    let action = format!("remove_route:{name}");
    let done = tokio::task::spawn_blocking(move || live.remove_route(&name)).await;
    answer(done, StatusCode::OK, action)
}

pub(super) fn get_limits(admin: &Admin) -> Handled {
    let (limits, by) = admin.0.live.limits();
    ok(
        StatusCode::OK,
        json!({ "limits": limits, "managed_by": by }),
        "get_limits",
    )
}

/// `Some`: the whole `[limits]` table (as `GET /admin/limits` returns it); `None`: back to the
/// config file's.
pub(super) async fn set_limits(admin: &Admin, limits: Option<LimitsConfig>) -> Handled {
    let live = admin.0.live.clone();
    let action = if limits.is_some() {
        "set_limits"
    } else {
        "clear_limits"
    };
    let done = tokio::task::spawn_blocking(move || live.set_limits(limits)).await;
    answer(done, StatusCode::OK, action.to_string())
}

/// The change's report, or why it was refused (every problem, in `warden check`'s words).
fn answer(
    done: Result<Result<LiveReport, KeyChangeError>, tokio::task::JoinError>,
    status: StatusCode,
    action: String,
) -> Handled {
    let refused = |status: StatusCode, code: &str, problems: Vec<String>| {
        ok(
            status,
            json!({ "error": { "status": status.as_u16(), "code": code }, "problems": problems }),
            format!("{action}:refused"),
        )
    };
    match done {
        Ok(Ok(report)) => ok(status, json!(report), action),
        Ok(Err(KeyChangeError::NoKeysFile)) => refused(
            StatusCode::CONFLICT,
            "no_keys_file",
            vec![
                "`admin.keys_file` is not set: keys, routes and limits change in the config file"
                    .into(),
            ],
        ),
        Ok(Err(KeyChangeError::FileManaged)) => refused(
            StatusCode::CONFLICT,
            "file_managed",
            vec!["it is the config file's: change it there".into()],
        ),
        Ok(Err(KeyChangeError::NotFound)) => {
            refused(StatusCode::NOT_FOUND, "not_found", Vec::new())
        }
        Ok(Err(KeyChangeError::Refused(problems))) => {
            refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", problems)
        }
        Err(_) => refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", Vec::new()),
    }
}
