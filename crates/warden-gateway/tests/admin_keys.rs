//! API keys through the admin API, over real sockets: a key added with `POST /admin/keys` works
//! on its next request, is written to `admin.keys_file` and loaded by a gateway started later;
//! the config file's keys cannot be touched there, nor can the file take an API-managed key
//! over; a disabled key stops working at once. Routes and rate limits the same way.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::upstream;
use serde_json::{Value, json};
use warden_config::{WardenConfig, hash_api_key};
use warden_gateway::{ConfigLoader, Gateway, LiveConfig};

const FILE_KEY: &str = "admin-keys-file-0123456789abcdef";
const API_KEY: &str = "admin-keys-api-0123456789abcdef";
const TOKEN: &str = "admin-token-0123456789abcdef";

struct Running {
    gateway: SocketAddr,
    admin: SocketAddr,
    live: LiveConfig,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    async fn get(&self, key: &str) -> u16 {
        self.client
            .get(format!("http://{}/api/t", self.gateway))
            .header("x-api-key", key)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, format!("http://{}{path}", self.admin))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin call");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

async fn start(file: &Path) -> Running {
    let config = WardenConfig::load(Some(file)).expect("valid config");
    let bus = common::bus(&config).await;
    let gateway = Gateway::start(&config, bus).await.expect("gateway");
    let f = file.to_path_buf();
    let loader: ConfigLoader = Arc::new(move || WardenConfig::load(Some(&f)));
    gateway.live().set_source(file.to_path_buf(), loader);
    let live = gateway.live().clone();
    let bind = || async {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    };
    let (listener, admin_listener) = (bind().await, bind().await);
    let (addr, admin) = (
        listener.local_addr().expect("addr"),
        admin_listener.local_addr().expect("addr"),
    );
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_stop_tx, admin_stop) = tokio::sync::watch::channel(false);
    let api = gateway.admin().clone();
    tokio::spawn(async move {
        let mut s = admin_stop;
        let _ = api
            .serve(admin_listener, async move {
                let _ = s.wait_for(|v| *v).await;
            })
            .await;
    });
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async {
                let _ = rx.await;
            })
            .await;
        let _ = admin_stop_tx.send(true);
    });
    Running {
        gateway: addr,
        admin,
        live,
        client: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        _stop: stop,
    }
}

fn key_body(id: &str, key: &str) -> Value {
    json!({
        "id": id, "sha256": hash_api_key(key), "identity": "dev-api", "tenant": "acme",
        "device_type": "sensor", "roles": [],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_through_the_admin_api_work_persist_and_never_override_the_file() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_file = dir.path().join("keys.json");
    let file = dir.path().join("warden.toml");
    let base = format!(
        "[admin]\ntoken_sha256 = \"{}\"\nkeys_file = \"{}\"\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://{up}\"\nauth = \"api_key\"\n\
         [[api_keys]]\nid = \"k-file\"\nsha256 = \"{}\"\nidentity = \"dev-file\"\ntenant = \"acme\"\n\
         device_type = \"sensor\"\nroles = []\n",
        hash_api_key(TOKEN),
        keys_file.display(),
        hash_api_key(FILE_KEY),
    );
    std::fs::write(&file, &base).expect("config");
    let gw = start(&file).await;
    assert_eq!(gw.get(FILE_KEY).await, 200);
    assert_eq!(gw.get(API_KEY).await, 401);

    // Added: works on its next request, and is on disk.
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/keys",
            Some(key_body("k-api", API_KEY)),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["applied"], true, "{body}");
    assert_eq!(gw.get(API_KEY).await, 200);
    let stored = std::fs::read_to_string(&keys_file).expect("keys file");
    assert!(
        stored.contains("k-api") && !stored.contains(API_KEY),
        "{stored}"
    );

    // Listed with who manages it; no digests.
    let (status, body) = gw.admin(reqwest::Method::GET, "/admin/keys", None).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(text.contains("\"managed_by\":\"admin_api\""), "{text}");
    assert!(text.contains("\"managed_by\":\"config_file\""), "{text}");
    assert!(!text.contains(&hash_api_key(API_KEY)), "{text}");

    // The same id again: refused with `warden check`'s problem; nothing changes.
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/keys",
            Some(key_body("k-api", "yet-another-key-0123456789")),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["problems"]
            .to_string()
            .contains("duplicate key id `k-api`"),
        "{body}"
    );

    // The file's keys are not the API's to touch.
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/keys",
            Some(key_body("k-file", "another-key-0123456789abc")),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("file_managed"))
    );
    let (status, _) = gw
        .admin(reqwest::Method::DELETE, "/admin/keys/k-file", None)
        .await;
    assert_eq!(status, 409);
    assert_eq!(gw.get(FILE_KEY).await, 200);

    // Nor may the file take the API's key over: that change is refused whole.
    std::fs::write(
        &file,
        format!(
            "{base}[[api_keys]]\nid = \"k-api\"\nsha256 = \"{}\"\nidentity = \"dev-x\"\n\
             tenant = \"acme\"\ndevice_type = \"sensor\"\nroles = []\n",
            hash_api_key("file-takes-over-0123456789")
        ),
    )
    .expect("config");
    let live = gw.live.clone();
    let report = tokio::task::spawn_blocking(move || live.reload())
        .await
        .expect("reload");
    assert!(!report.applied);
    assert!(
        report
            .problems
            .join("\n")
            .contains("also managed by the admin API"),
        "{report:?}"
    );
    std::fs::write(&file, &base).expect("config");

    // A gateway started later loads the API-managed key.
    let second = start(&file).await;
    assert_eq!(second.get(API_KEY).await, 200, "loaded from the keys file");

    // Disabled: refused at once, and gone from the file.
    let (status, body) = gw
        .admin(reqwest::Method::DELETE, "/admin/keys/k-api", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.get(API_KEY).await, 401);
    let stored = std::fs::read_to_string(&keys_file).expect("keys file");
    assert!(!stored.contains("k-api"), "{stored}");
    let (status, _) = gw
        .admin(reqwest::Method::DELETE, "/admin/keys/k-api", None)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_limits_change_through_the_admin_api_and_persist() {
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_file = dir.path().join("managed.json");
    let file = dir.path().join("warden.toml");
    let base = format!(
        "[admin]\ntoken_sha256 = \"{}\"\nkeys_file = \"{}\"\n\
         [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://{up}\"\nauth = \"api_key\"\n\
         [[api_keys]]\nid = \"k-file\"\nsha256 = \"{}\"\nidentity = \"dev-file\"\ntenant = \"acme\"\n\
         device_type = \"sensor\"\nroles = []\n",
        hash_api_key(TOKEN),
        keys_file.display(),
        hash_api_key(FILE_KEY),
    );
    std::fs::write(&file, &base).expect("config");
    let gw = start(&file).await;
    let get = |gw: &Running, path: &'static str| {
        let (client, addr) = (gw.client.clone(), gw.gateway);
        async move {
            client
                .get(format!("http://{addr}{path}"))
                .header("x-api-key", FILE_KEY)
                .send()
                .await
                .map_or(0, |r| r.status().as_u16())
        }
    };
    assert_eq!(get(&gw, "/v2/t").await, 404);

    // A route added through the API serves at once and is on disk.
    let route = json!({"name": "v2", "prefix": "/v2", "upstream": format!("http://{up}"), "auth": "api_key"});
    let (status, body) = gw
        .admin(reqwest::Method::POST, "/admin/routes", Some(route.clone()))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(get(&gw, "/v2/t").await, 200);
    assert!(
        std::fs::read_to_string(&keys_file)
            .expect("file")
            .contains("\"v2\"")
    );
    let (status, body) = gw.admin(reqwest::Method::GET, "/admin/routes", None).await;
    assert_eq!(status, 200);
    let text = body.to_string();
    assert!(
        text.contains("\"managed_by\":\"admin_api\"")
            && text.contains("\"managed_by\":\"config_file\""),
        "{text}"
    );

    // The file's route is not the API's; an invalid route is refused with every problem; the
    // same name twice is refused.
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/routes",
            Some(json!({"name": "api", "prefix": "/other", "upstream": format!("http://{up}")})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("file_managed"))
    );
    let (status, body) = gw
        .admin(
            reqwest::Method::POST,
            "/admin/routes",
            Some(json!({"name": "bad", "prefix": "no-slash", "upstream": "ftp://x"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["problems"].as_array().is_some_and(|p| !p.is_empty()),
        "{body}"
    );
    let (status, _) = gw
        .admin(reqwest::Method::POST, "/admin/routes", Some(route))
        .await;
    assert_eq!(status, 422);

    // Limits: read, tightened through the API, enforced at once.
    let (status, body) = gw.admin(reqwest::Method::GET, "/admin/limits", None).await;
    assert_eq!(
        (status, body["managed_by"].clone()),
        (200, json!("config_file")),
        "{body}"
    );
    let mut limits = body["limits"].clone();
    limits["identity"] = json!({"rate_per_s": 0.5, "burst": 2});
    let (status, body) = gw
        .admin(reqwest::Method::PUT, "/admin/limits", Some(limits))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(get(&gw, "/api/t").await);
    }
    assert!(
        codes.contains(&429),
        "the API's limit is not enforced: {codes:?}"
    );
    let (_, body) = gw.admin(reqwest::Method::GET, "/admin/limits", None).await;
    assert_eq!(body["managed_by"], json!("admin_api"), "{body}");

    // A gateway started later serves the API's route and limits.
    let second = start(&file).await;
    assert_eq!(
        get(&second, "/v2/t").await,
        200,
        "route loaded from the file"
    );
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(get(&second, "/api/t").await);
    }
    assert!(
        codes.contains(&429),
        "limits loaded from the file: {codes:?}"
    );

    // Cleared: the file's limits again. Removed: the route is gone.
    let (status, body) = gw
        .admin(reqwest::Method::DELETE, "/admin/limits", None)
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(get(&gw, "/api/t").await, 200);
    let (status, body) = gw
        .admin(reqwest::Method::DELETE, "/admin/routes/v2", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get(&gw, "/v2/t").await, 404);
    let (status, _) = gw
        .admin(reqwest::Method::DELETE, "/admin/routes/v2", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = gw
        .admin(reqwest::Method::DELETE, "/admin/routes/api", None)
        .await;
    assert_eq!(status, 409);
}

/// Two gateways sharing one keys file (on one host, or a shared volume): a key added through
/// either's admin API is served by the other from its next check of the file; changes made
/// through both in turn all survive (each starts from the file as it is now, under a lock on
/// `FILE.lock`), so neither overwrites the other's; a keys file broken by hand is refused whole
/// and what serves stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_sharing_a_keys_file_share_the_admin_api_changes() {
    const ONE: &str = "shared-key-one-0123456789abcdef";
    const TWO: &str = "shared-key-two-0123456789abcdef";
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let keys_file = dir.path().join("keys.json");
    let file = dir.path().join("warden.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\ntoken_sha256 = \"{}\"\nkeys_file = \"{}\"\n\
             [[routes]]\nname = \"api\"\nprefix = \"/api\"\nupstream = \"http://{up}\"\nauth = \"api_key\"\n",
            hash_api_key(TOKEN),
            keys_file.display(),
        ),
    )
    .expect("config");
    let a = start(&file).await;
    let b = start(&file).await;
    async fn add(gw: &Running, id: &str, key: &str) {
        let (status, body) = gw
            .admin(
                reqwest::Method::POST,
                "/admin/keys",
                Some(key_body(id, key)),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let check = |gw: &Running| {
        let live = gw.live.clone();
        async move {
            tokio::task::spawn_blocking(move || live.reload_if_changed())
                .await
                .expect("check")
        }
    };

    add(&a, "k-one", ONE).await;
    assert_eq!(a.get(ONE).await, 200);
    assert_eq!(b.get(ONE).await, 401, "B has not checked the file yet");
    // B adds another key before its own check: it starts from the file as it is, so A's key
    // survives, and B serves both at once.
    add(&b, "k-two", TWO).await;
    assert_eq!((b.get(ONE).await, b.get(TWO).await), (200, 200));
    // A serves B's key from its next check.
    let report = check(&a).await.expect("the file changed");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((a.get(ONE).await, a.get(TWO).await), (200, 200));
    assert!(check(&a).await.is_none(), "nothing new");
    let stored = std::fs::read_to_string(&keys_file).expect("keys file");
    assert!(
        stored.contains("k-one") && stored.contains("k-two"),
        "{stored}"
    );
    // B disables A's key; A stops serving it from its next check.
    let (status, body) = b
        .admin(reqwest::Method::DELETE, "/admin/keys/k-one", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(b.get(ONE).await, 401);
    check(&a).await.expect("changed");
    assert_eq!((a.get(ONE).await, a.get(TWO).await), (401, 200));
    // A keys file broken by hand: refused whole, the keys serving stay.
    std::fs::write(&keys_file, "{ not json").expect("write");
    let report = check(&a).await.expect("changed");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("not a keys file")),
        "{:?}",
        report.problems
    );
    assert_eq!(a.get(TWO).await, 200);
}
