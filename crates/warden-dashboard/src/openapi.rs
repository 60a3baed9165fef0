//! The OpenAPI 3.1 document of the console's JSON API, served at `/api/openapi.json`.
//!
//! Paths are written here; the schemas of the bodies are generated from the very Rust types
//! the handlers serialize (`schemars`), so the document cannot drift from the responses. A
//! test validates real responses against it (`tests/openapi.rs`).

use std::sync::OnceLock;

use axum::Json;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};
use warden_event::{Alert, Decision};

use crate::api::{DeviceView, QuarantineRequest, ReleaseRequest, SessionView};
use crate::state::ActiveDecision;
use crate::traffic::{FleetTrafficView, SubjectTrafficView};
use crate::views::{AlertView, SearchView};

fn schema_ref(
    generator: &mut schemars::SchemaGenerator,
    f: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
) -> Value {
    f(generator).to_value()
}

fn of<T: JsonSchema>(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
    g.subschema_for::<T>()
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn build() -> Value {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let alert = schema_ref(&mut g, of::<Alert>);
    let decision = schema_ref(&mut g, of::<Decision>);
    let active = schema_ref(&mut g, of::<ActiveDecision>);
    let device = schema_ref(&mut g, of::<DeviceView>);
    let session = schema_ref(&mut g, of::<SessionView>);
    let release = schema_ref(&mut g, of::<ReleaseRequest>);
    let quarantine = schema_ref(&mut g, of::<QuarantineRequest>);
    let fleet = schema_ref(&mut g, of::<FleetTrafficView>);
    let subject_traffic = schema_ref(&mut g, of::<SubjectTrafficView>);
    let alert_view = schema_ref(&mut g, of::<AlertView>);
    let search = schema_ref(&mut g, of::<SearchView>);
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["status", "code", "request_id"],
                "properties": {
                    "status": { "type": "integer" },
                    "code": { "type": "string" },
                    "request_id": { "type": "string" }
                }
            }}
        }),
    );
    let ok = |description: &str, schema: Value| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let error =
        |description: &str| ok(description, json!({ "$ref": "#/components/schemas/Error" }));
    let array = |items: &Value| json!({ "type": "array", "items": items });
    let refusals = json!({
        "401": error("No session and no valid operator token"),
        "400": error("Malformed request"),
    });
    let with = |mut responses: Value, extra: Value| {
        if let (Some(r), Some(e)) = (responses.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        responses
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Warden console API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The JSON API behind the Warden console. Every path needs a session cookie (from POST /login) or `Authorization: Bearer <operator token>`; state changes made with a session also need its CSRF token in `X-CSRF-Token`. Times are nanoseconds since the Unix epoch."
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "session": { "type": "apiKey", "in": "cookie", "name": "warden_session" }
            }
        },
        "security": [{ "bearer": [] }, { "session": [] }],
        "paths": {
            "/api/session": { "get": {
                "summary": "Who is signed in, their role and the CSRF token",
                "responses": with(json!({ "200": ok("The operator", session) }), refusals.clone())
            }},
            "/api/alerts": { "get": {
                "summary": "Recent alerts, newest first, a page at a time (the `x-total-count` header says how many match)",
                "parameters": [
                    { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "offset", "in": "query", "description": "Alerts to skip (the next page starts at offset + limit)", "schema": { "type": "integer", "minimum": 0 } },
                    { "name": "subject", "in": "query", "description": "`kind:value`, e.g. `identity:dev-1`", "schema": { "type": "string" } }
                ],
                "responses": with(json!({ "200": ok("Alerts", array(&alert)) }), refusals.clone())
            }},
            "/api/alerts/{id}": { "get": {
                "summary": "One alert with its evidence (feature values, baseline), the detectors that agreed and the decision",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with(json!({
                    "200": ok("The alert", alert_view),
                    "404": error("No such alert is held")
                }), refusals.clone())
            }},
            "/api/traffic": { "get": {
                "summary": "The fleet's traffic per minute over the last hour (requests, bytes, errors, refusals by reason) and its top talkers",
                "responses": with(json!({ "200": ok("Traffic", fleet) }), refusals.clone())
            }},
            "/api/traffic/{kind}/{value}": { "get": {
                "summary": "One subject's traffic per minute over the last hour, refusals by reason, routes and peers seen (identities, IPs and tenants)",
                "parameters": [
                    { "name": "kind", "in": "path", "required": true, "schema": { "type": "string", "enum": ["identity", "ip", "tenant", "api_key", "route"] } },
                    { "name": "value", "in": "path", "required": true, "schema": { "type": "string" } }
                ],
                "responses": with(json!({ "200": ok("Traffic", subject_traffic) }), refusals.clone())
            }},
            "/api/search": { "get": {
                "summary": "Identities, IPs and tenants whose value contains `q` (`kind:value` searches one kind), busiest first",
                "parameters": [{ "name": "q", "in": "query", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": 512 } }],
                "responses": with(json!({ "200": ok("Subjects found", search) }), refusals.clone())
            }},
            "/api/quarantine": {
                "get": {
                    "summary": "Quarantines and throttles in force, most recent first",
                    "responses": with(json!({ "200": ok("Active decisions", array(&active)) }), refusals.clone())
                },
                "post": {
                    "summary": "Quarantine a subject by hand (operators)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": quarantine } } },
                    "responses": with(json!({
                        "202": ok("The decision, published", decision.clone()),
                        "403": error("A viewer, or a session request without its CSRF token"),
                        "503": error("The bus did not acknowledge the decision")
                    }), refusals.clone())
                }
            },
            "/api/quarantine/release": { "post": {
                "summary": "Release a quarantined or throttled subject (operators); the reason is required",
                "requestBody": { "required": true, "content": { "application/json": { "schema": release } } },
                "responses": with(refusals.clone(), json!({
                    "400": error("No reason (code `reason_required`), or a malformed request"),
                    "202": ok("The release decision, published", decision.clone()),
                    "403": error("A viewer, or a session request without its CSRF token"),
                    "404": error("The subject is not quarantined or throttled"),
                    "503": error("The bus did not acknowledge the release")
                }))
            }},
            "/api/devices/{identity}": { "get": {
                "summary": "One identity: its alerts and latest decision",
                "parameters": [{ "name": "identity", "in": "path", "required": true, "schema": { "type": "string" } }],
                "responses": with(json!({ "200": ok("The identity", device) }), refusals.clone())
            }},
            "/api/status": { "get": {
                "summary": "Health of the processor beside the console: pipeline (last reload, last refused change), events/s, consumer lag per partition, bus reachability, state size, the ML models served (kind, content hash, training window)",
                "responses": with(json!({ "200": ok("Status", json!({ "type": "object" })) }), refusals.clone())
            }},
            "/api/stream": { "get": {
                "summary": "Server-sent events: `update` per new alert or decision (JSON), `resync` when this client fell behind",
                "responses": with(json!({ "200": { "description": "An event stream", "content": { "text/event-stream": {} } } }), refusals.clone())
            }},
            "/api/openapi.json": { "get": {
                "summary": "This document",
                "responses": with(json!({ "200": ok("OpenAPI 3.1", json!({ "type": "object" })) }), refusals)
            }}
        }
    })
}

/// `GET /api/openapi.json`.
pub(crate) async fn serve() -> Json<Value> {
    Json(document().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/openapi.json is this document; `WARDEN_WRITE_OPENAPI=1 cargo test -p
    /// warden-dashboard --lib openapi` rewrites it after an API change.
    #[test]
    fn the_document_in_the_repo_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let text = serde_json::to_string_pretty(document()).expect("json") + "\n";
        if std::env::var_os("WARDEN_WRITE_OPENAPI").is_some() {
            std::fs::write(path, &text).expect("write docs/openapi.json");
        }
        let in_repo = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            in_repo == text,
            "docs/openapi.json is out of date: WARDEN_WRITE_OPENAPI=1 cargo test -p warden-dashboard --lib openapi"
        );
    }
}
