//! API versions and their deprecation, over real sockets: a deprecated route answers with
//! `Deprecation`, `Sunset` and `Link` headers, one past its sunset is refused with 410 and
//! never reaches the upstream, an announced deprecation carries its future date, and the admin
//! API lists who still calls deprecated versions.

mod common;

use std::time::Duration;

use serde_json::Value;
use warden_config::{WardenConfig, hash_api_key};

const KEY: &str = "deprecation-key-0123456789abcdef";
const TOKEN: &str = "deprecation-admin-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_versions_say_so_sunset_ones_are_gone_and_callers_are_listed() {
    let up = common::upstream().await;
    let text = format!(
        r#"
[admin]
token_sha256 = "{token}"

[[routes]]
name = "api-v1"
prefix = "/v1"
upstream = "http://{up}"
auth = "api_key"
[routes.deprecation]
version = "v1"
deprecated_at = "2025-01-01T00:00:00Z"
sunset_at = "2099-12-31T00:00:00Z"
link = "https://docs.example.com/migrate-to-v2"

[[routes]]
name = "api-v0"
prefix = "/v0"
upstream = "http://{up}"
auth = "api_key"
[routes.deprecation]
version = "v0"
deprecated_at = "2024-01-01T00:00:00Z"
sunset_at = "2025-01-01T00:00:00Z"

[[routes]]
name = "api-v2"
prefix = "/v2"
upstream = "http://{up}"
auth = "api_key"
[routes.deprecation]
version = "v2"
deprecated_at = "2099-01-01T00:00:00Z"

[[api_keys]]
id = "k1"
sha256 = "{key}"
identity = "dev-1"
tenant = "acme"
device_type = "sensor"
roles = []
"#,
        token = hash_api_key(TOKEN),
        key = hash_api_key(KEY),
    );
    let config = WardenConfig::from_toml(&text).expect("valid config");
    let served = common::serve(&config).await;
    let (gw, admin_addr) = (served.gateway, served.admin);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let get = |path: &str| {
        client
            .get(format!("http://{gw}{path}"))
            .header("x-api-key", KEY)
            .send()
    };

    let v1 = get("/v1/telemetry").await.expect("v1");
    assert_eq!(v1.status().as_u16(), 200);
    let h = |r: &reqwest::Response, k: &str| {
        r.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(h(&v1, "deprecation"), "@1735689600");
    assert_eq!(h(&v1, "sunset"), "Thu, 31 Dec 2099 00:00:00 GMT");
    assert_eq!(
        h(&v1, "link"),
        r#"<https://docs.example.com/migrate-to-v2>; rel="deprecation"; type="text/html""#
    );

    let v0 = get("/v0/telemetry").await.expect("v0");
    assert_eq!(v0.status().as_u16(), 410);
    let body: Value = v0.json().await.expect("json");
    assert_eq!(body["error"]["code"], "gone", "{body}");

    // Announced, not yet deprecated: the date is sent, the caller is not listed.
    let v2 = get("/v2/telemetry").await.expect("v2");
    assert_eq!(v2.status().as_u16(), 200);
    assert_eq!(h(&v2, "deprecation"), "@4070908800");
    assert_eq!(h(&v2, "sunset"), "");

    let listed: Value = client
        .get(format!("http://{admin_addr}/admin/deprecated"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("json");
    let route = |name: &str| {
        listed["routes"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["route"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let v1 = route("api-v1");
    assert_eq!(v1["version"], "v1", "{listed}");
    assert_eq!(v1["deprecated_now"], true);
    assert_eq!(v1["callers"][0]["identity"], "dev-1", "{listed}");
    assert_eq!(v1["callers"][0]["requests"], 1, "{listed}");
    assert_eq!(route("api-v0")["gone"], true, "{listed}");
    assert_eq!(route("api-v2")["deprecated_now"], false, "{listed}");
    assert_eq!(route("api-v2")["callers"], Value::Array(vec![]), "{listed}");
    let anonymous = client
        .get(format!("http://{admin_addr}/admin/deprecated"))
        .send()
        .await
        .expect("admin");
    assert_eq!(anonymous.status().as_u16(), 401);

    // Settings that cannot be right are refused, every one named.
    let bad = text
        .replace(
            "sunset_at = \"2099-12-31T00:00:00Z\"",
            "sunset_at = \"2020-01-01T00:00:00Z\"",
        )
        .replace(
            "link = \"https://docs.example.com/migrate-to-v2\"",
            "link = \"javascript:alert(1)\"",
        )
        .replace(
            "deprecated_at = \"2099-01-01T00:00:00Z\"",
            "deprecated_at = \"next tuesday\"",
        );
    let errs = WardenConfig::from_toml(&bad)
        .expect_err("refused")
        .to_string();
    for needle in [
        "routes[0].deprecation.sunset_at",
        "routes[0].deprecation.link",
        "routes[2].deprecation.deprecated_at",
    ] {
        assert!(errs.contains(needle), "{needle} missing: {errs}");
    }
    drop(served);
}
