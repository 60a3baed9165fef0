//! CoAP over DTLS (`coaps://`) with libcoap's OpenSSL client: a device's client certificate
//! is its identity (the backend gets its request, the event names it and its certificate); a
//! device without one uses the credential option inside the session; another device's
//! resource is refused as on the plain listener.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coap_over_dtls_names_devices_by_their_certificate_or_key() -> anyhow::Result<()> {
    let client = libcoap("coap-client-openssl")?;
    let ca = Ca::new("coaps test CA")?;
    let server = ca.server()?;
    let device = ca.device(
        &format!("{DEVICE_URI}dev-1"),
        "dev-1",
        11,
        days(-1),
        days(30),
    )?;
    let rig = Rig::start(Some((&ca, &server))).await?;
    let coaps = rig.coaps.context("DTLS listener")?;
    let dir = tempfile::tempdir()?;
    let (ca_f, cert_f, key_f) = device_pki_files(dir.path(), &ca, &device)?;
    let base = format!("coaps://127.0.0.1:{}", coaps.port());
    let args = |extra: &[&str], path: &str| -> Vec<String> {
        extra
            .iter()
            .map(|s| s.to_string())
            .chain([format!("{base}/{path}")])
            .collect()
    };

    // The client certificate names the device: its POST reaches the backend.
    let out = run(
        client,
        args(
            &[
                "-m",
                "post",
                "-c",
                &cert_f,
                "-j",
                &key_f,
                "-C",
                &ca_f,
                "-t",
                "json",
                "-e",
                "{\"t\":9}",
            ],
            "devices/dev-1/telemetry",
        ),
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    {
        let seen = rig.seen.lock();
        let s = seen
            .iter()
            .find(|s| s.path == "/api/devices/dev-1/telemetry")
            .context("the backend did not get the POST over DTLS")?;
        assert_eq!(s.body, b"{\"t\":9}");
    }
    // A GET answered over the session.
    let out = run(
        client,
        args(
            &["-c", &cert_f, "-j", &key_f, "-C", &ca_f],
            "devices/dev-1/config",
        ),
    )
    .await?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "seen /api/devices/dev-1/config",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The certificate's device may not write another's resource.
    let before = rig.seen.lock().len();
    let out = run(
        client,
        args(
            &[
                "-m", "post", "-c", &cert_f, "-j", &key_f, "-C", &ca_f, "-e", "x",
            ],
            "devices/dev-2/telemetry",
        ),
    )
    .await?;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4.03")
            || String::from_utf8_lossy(&out.stderr).contains("4.03"),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rig.seen.lock().len(), before, "refused before the backend");

    // No client certificate: the key in the credential option, inside the session.
    let key_opt = format!("65001,{KEY_2}");
    let out = run(
        client,
        args(
            &["-m", "post", "-R", &ca_f, "-O", &key_opt, "-e", "{}"],
            "devices/dev-2/telemetry",
        ),
    )
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rig.seen
            .lock()
            .iter()
            .any(|s| s.path == "/api/devices/dev-2/telemetry"),
        "the key's device reached the backend over DTLS"
    );

    let events = rig.events().await?;
    let by_cert = events
        .iter()
        .find(|e| e.protocol == Protocol::Coap && e.path == "devices/dev-1/telemetry")
        .context("the DTLS request's event")?;
    assert_eq!(by_cert.identity, "dev-1");
    assert_eq!(by_cert.auth.method, warden_event::AuthMethod::ClientCert);
    let by_key = events
        .iter()
        .find(|e| {
            e.protocol == Protocol::Coap && e.path == "devices/dev-2/telemetry" && e.status == 200
        })
        .context("the key's event")?;
    assert_eq!(by_key.identity, "dev-2");
    Ok(())
}
