//! Request heads: consumed credentials, the gateway's own headers, method case, method
//! overrides, path variants and `Host` (issue 18, items 1–4, 6, 8).

use anyhow::ensure;
use warden_config::MethodOverride;

use crate::common::{self, DEV1, OPS, raw, req};
use crate::harness::{self, Hit, h2, recorder, token};

fn status_and_code(r: &common::Resp, status: u16, code: &str) -> anyhow::Result<()> {
    ensure!(r.status == status, "want {status}, got {r:?}");
    if status >= 400 {
        r.check_generic()?;
        ensure!(r.body.contains(code), "want code {code}: {}", r.body);
    }
    Ok(())
}

fn no_credential(h: &Hit) -> anyhow::Result<()> {
    for (k, v) in &h.headers {
        let n = k.to_ascii_lowercase().replace('_', "-");
        ensure!(
            n != "x-api-key" && n != "authorization",
            "credential `{k}: {v}` reached the upstream on {}",
            h.path
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumed_credentials_never_reach_the_upstream_and_bearer_only_where_forwarded()
-> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let a = gw.addr;
    let jwt = token("ops-jwt")?;
    for (path, auth) in [
        ("/api/admin/c1", format!("Authorization: ApiKey {OPS}\r\n")),
        ("/api/admin/c2", format!("authorization: apikey {OPS}\r\n")),
        ("/api/admin/c3", format!("X-Api-Key: {OPS}\r\n")),
        (
            "/api/jwtonly/c4",
            format!("Authorization: Bearer {jwt}\r\n"),
        ),
    ] {
        let r = raw(a, &req(&format!("GET {path} HTTP/1.1\r\n{auth}"), "")).await?;
        status_and_code(&r, 200, "")?;
    }
    // HTTP/2: the same credential forms.
    let c = h2()?;
    let r = c
        .get(format!("http://{a}/api/admin/c5"))
        .header("authorization", format!("ApiKey {OPS}"))
        .send()
        .await?;
    ensure!(r.status() == 200, "h2 ApiKey: {}", r.status());
    let r = c
        .get(format!("http://{a}/api/jwtonly/c6"))
        .bearer_auth(&jwt)
        .send()
        .await?;
    ensure!(r.status() == 200, "h2 bearer: {}", r.status());
    // A route that forwards bearer tokens gets the token, and only that.
    let r = raw(
        a,
        &req(
            &format!("GET /api/bearer/c7 HTTP/1.1\r\nAuthorization: Bearer {jwt}\r\n"),
            "",
        ),
    )
    .await?;
    status_and_code(&r, 200, "")?;

    let hits = up.hits();
    ensure!(
        hits.len() == 7,
        "every legitimate request arrived: {hits:?}"
    );
    for h in hits.iter().filter(|h| !h.path.starts_with("/api/bearer")) {
        no_credential(h)?;
    }
    let fwd = up.hits_under("/api/bearer");
    ensure!(
        fwd.len() == 1 && fwd[0].header("authorization") == Some(&format!("Bearer {jwt}")),
        "bearer forwarded where the route says so: {fwd:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_header_variants_and_underscores_are_refused_or_stripped() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let a = gw.addr;
    let key = format!("X-Api-Key: {DEV1}\r\n");
    // Underscores refused on ordinary routes, whatever the header.
    for spoof in [
        "X_Warden_Identity: dev-2\r\n",
        "X_Warden_Tenant: evil\r\n",
        "x_warden_identity: dev-2\r\n",
        "X_Forwarded_For: 10.0.0.1\r\n",
        "Custom_Header: 1\r\n",
    ] {
        let head = format!("GET /api/devices/dev-1/config HTTP/1.1\r\n{key}{spoof}");
        let r = raw(a, &req(&head, "")).await?;
        status_and_code(&r, 400, "bad_header").map_err(|e| e.context(spoof))?;
    }
    let r = h2()?
        .get(format!("http://{a}/api/devices/dev-1/config"))
        .header("x-api-key", DEV1)
        .header("x_warden_identity", "dev-2")
        .send()
        .await?;
    ensure!(r.status() == 400, "h2 underscore: {}", r.status());
    ensure!(
        up.hits().is_empty(),
        "nothing refused arrived: {:?}",
        up.hits()
    );

    // Where a route allows underscores, variants of the gateway's headers are still removed,
    // and the gateway's own value is the only one the upstream sees.
    let head = format!(
        "GET /api/legacy/x HTTP/1.1\r\nX-Api-Key: {OPS}\r\nX_Warden_Identity: dev-2\r\n\
         X-WARDEN-TENANT: evil\r\nX_Api_Key: {DEV1}\r\nX_Request_Id: forged\r\nLegacy_Token: 7\r\n"
    );
    let r = raw(a, &req(&head, "")).await?;
    status_and_code(&r, 200, "")?;
    let hits = up.hits_under("/api/legacy");
    ensure!(hits.len() == 1, "{hits:?}");
    let h = &hits[0];
    no_credential(h)?;
    let warden: Vec<_> = h
        .headers
        .iter()
        .filter(|(k, _)| {
            let n = k.to_ascii_lowercase().replace('_', "-");
            n.starts_with("x-warden-") || n == "x-request-id"
        })
        .collect();
    ensure!(
        warden.len() == 3
            && h.header("x-warden-identity") == Some("ops-1")
            && h.header("x-warden-tenant") == Some("acme")
            && h.header("x-request-id") != Some("forged"),
        "only the gateway's own values: {warden:?}"
    );
    ensure!(
        h.header("legacy_token") == Some("7"),
        "allowed underscores pass"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_are_case_sensitive_and_overrides_refused_or_authorized() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let a = gw.addr;
    let dev = format!("X-Api-Key: {DEV1}\r\n");
    let ops = format!("X-Api-Key: {OPS}\r\n");
    let cfg = "/api/devices/dev-1/config";
    // The policy denies DELETE to a sensor: every spelling is refused, none reaches upstream.
    let r = raw(a, &req(&format!("DELETE {cfg} HTTP/1.1\r\n{dev}"), "")).await?;
    status_and_code(&r, 403, "forbidden")?;
    for m in ["delete", "Delete", "dElEtE", "get"] {
        let r = raw(a, &req(&format!("{m} {cfg} HTTP/1.1\r\n{dev}"), "")).await?;
        status_and_code(&r, 400, "bad_method").map_err(|e| e.context(m))?;
    }
    // The other side: an admin allowed every method still needs the canonical spelling.
    let r = raw(
        a,
        &req(&format!("delete /api/admin/m1 HTTP/1.1\r\n{ops}"), ""),
    )
    .await?;
    status_and_code(&r, 400, "bad_method")?;
    let r = raw(
        a,
        &req(&format!("DELETE /api/admin/m2 HTTP/1.1\r\n{ops}"), ""),
    )
    .await?;
    status_and_code(&r, 200, "")?;
    let r = h2()?
        .request(
            reqwest::Method::from_bytes(b"delete")?,
            format!("http://{a}{cfg}"),
        )
        .header("x-api-key", DEV1)
        .send()
        .await?;
    ensure!(r.status() == 400, "h2 lower-case method: {}", r.status());

    // Overrides are refused by default, in every form.
    for (target, extra) in [
        (cfg.to_string(), "X-HTTP-Method-Override: DELETE\r\n"),
        (cfg.to_string(), "X-Method-Override: DELETE\r\n"),
        (cfg.to_string(), "X-HTTP-Method: DELETE\r\n"),
        (format!("{cfg}?_method=DELETE"), ""),
        (format!("{cfg}?a=1&%5Fmethod=DELETE"), ""),
        (format!("{cfg}?_METHOD=DELETE"), ""),
    ] {
        let r = raw(
            a,
            &req(&format!("GET {target} HTTP/1.1\r\n{dev}{extra}"), ""),
        )
        .await?;
        status_and_code(&r, 400, "method_override").map_err(|e| e.context(target))?;
    }
    let hits: Vec<String> = up
        .hits()
        .iter()
        .map(|h| format!("{} {}", h.method, h.path))
        .collect();
    ensure!(
        hits == ["DELETE /api/admin/m2"],
        "only the canonical admin DELETE: {hits:?}"
    );
    drop(gw);

    // Configured to authorize: the overridden method must pass the route and RBAC too.
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let mut c = harness::config(&up, dir.path())?;
    c.gateway.method_override = MethodOverride::Authorize;
    let gw = common::gateway(c, &[]).await?;
    let a = gw.addr;
    let r = raw(
        a,
        &req(
            &format!("GET {cfg} HTTP/1.1\r\n{dev}X-HTTP-Method-Override: DELETE\r\n"),
            "",
        ),
    )
    .await?;
    status_and_code(&r, 403, "forbidden")?;
    let r = raw(
        a,
        &req(&format!("GET {cfg}?_method=delete HTTP/1.1\r\n{dev}"), ""),
    )
    .await?;
    status_and_code(&r, 400, "method_override")?;
    let r = raw(
        a,
        &req(
            &format!(
                "GET /api/firmware/v1?_method=DELETE HTTP/1.1\r\nX-Api-Key: {}\r\n",
                common::HUB1
            ),
            "",
        ),
    )
    .await?;
    status_and_code(&r, 405, "method_not_allowed")?;
    let r = raw(
        a,
        &req(
            &format!("GET /api/admin/o1 HTTP/1.1\r\n{ops}X-HTTP-Method-Override: DELETE\r\n"),
            "",
        ),
    )
    .await?;
    status_and_code(&r, 200, "")?;
    let hits = up.hits();
    ensure!(
        hits.len() == 1 && hits[0].header("x-http-method-override") == Some("DELETE"),
        "only the authorized override arrived: {hits:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_variants_and_bad_hosts_are_refused() -> anyhow::Result<()> {
    let up = recorder().await?;
    let dir = tempfile::tempdir()?;
    let gw = common::gateway(harness::config(&up, dir.path())?, &[]).await?;
    let a = gw.addr;
    let ops = format!("X-Api-Key: {OPS}\r\n");
    // Under a wildcard grant (`/api/**` for the admin), as well as anywhere else.
    let tricks = [
        "/api/admin/%EF%BC%8E%EF%BC%8E/secret",
        "/api/admin/%EF%BC%8E%EF%BC%8E%EF%BC%8Fsecret",
        "/api/admin/%E2%80%A5/secret",
        "/api/admin/%20../secret",
        "/api/admin/..%20/secret",
        "/api/admin/.../secret",
        "/api/admin/./../secret",
    ];
    for t in tricks {
        let r = raw(a, &req(&format!("GET {t} HTTP/1.1\r\n{ops}"), "")).await?;
        status_and_code(&r, 400, "bad_path").map_err(|e| e.context(t))?;
    }
    let c = h2()?;
    for t in &tricks[..6] {
        let r = c
            .get(format!("http://{a}{t}"))
            .header("x-api-key", OPS)
            .send()
            .await?;
        ensure!(r.status() == 400, "h2 {t}: {}", r.status());
    }
    // Host: none, two, or invalid on HTTP/1.1 is 400 (RFC 9112 §3.2).
    let no_host = format!("GET /api/admin/h1 HTTP/1.1\r\n{ops}Connection: close\r\n\r\n");
    let two = format!(
        "GET /api/admin/h2 HTTP/1.1\r\n{ops}Host: a\r\nHost: b\r\nConnection: close\r\n\r\n"
    );
    let bad =
        format!("GET /api/admin/h3 HTTP/1.1\r\n{ops}Host: a b@c\r\nConnection: close\r\n\r\n");
    for (name, r) in [("no host", no_host), ("two hosts", two), ("bad host", bad)] {
        let resp = raw(a, r.as_bytes()).await?;
        ensure!(resp.status == 400, "{name}: {resp:?}");
    }
    // One Host, and HTTP/1.0 without one, pass.
    let r = raw(a, &req(&format!("GET /api/admin/h4 HTTP/1.1\r\n{ops}"), "")).await?;
    status_and_code(&r, 200, "")?;
    let r = raw(
        a,
        format!("GET /api/admin/h5 HTTP/1.0\r\n{ops}\r\n").as_bytes(),
    )
    .await?;
    status_and_code(&r, 200, "")?;
    let hits: Vec<String> = up.hits().iter().map(|h| h.path.clone()).collect();
    ensure!(
        hits == ["/api/admin/h4", "/api/admin/h5"],
        "upstream saw: {hits:?}"
    );
    Ok(())
}
