//! `GET/POST /admin/keys`, `DELETE /admin/keys/{id}`: API keys managed through the admin API
//! (see `live/managed.rs`). A key added here is checked with the config file's keys exactly as
//! `warden check` checks `api_keys`, written to `admin.keys_file`, then served — all or
//! nothing; the config file's own keys are refused here (409: change them in the file).

use axum::http::StatusCode;
use serde_json::json;
use warden_config::ApiKeyConfig;

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
            vec!["`admin.keys_file` is not set: keys change in the config file".into()],
        ),
        Ok(Err(KeyChangeError::FileManaged)) => refused(
            StatusCode::CONFLICT,
            "file_managed",
            vec!["the key is the config file's: change it there".into()],
        ),
        Ok(Err(KeyChangeError::NotFound)) => {
            refused(StatusCode::NOT_FOUND, "not_found", Vec::new())
        }
        Ok(Err(KeyChangeError::Refused(problems))) => {
            refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid_key", problems)
        }
        Err(_) => refused(StatusCode::INTERNAL_SERVER_ERROR, "internal", Vec::new()),
    }
}
