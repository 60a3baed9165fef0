//! A small Chrome DevTools Protocol client for the browser tests: starts a headless Chromium
//! on a throw-away profile, opens a page and drives it as a user would (navigate, type, click
//! at an element's position, answer `prompt()` dialogs) and reads it back (evaluate,
//! screenshots). One WebSocket per target, one request id per call; events other than dialogs
//! and page exceptions are ignored.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long Chromium may take to open its DevTools endpoint.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The page size of every screenshot.
pub const VIEWPORT: (u32, u32) = (1280, 860);

/// The Chromium (or Chrome) binary: `WARDEN_CHROMIUM`, else the first of the usual names on
/// `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WARDEN_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
        "chrome",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// A headless Chromium, killed when dropped.
pub struct Browser {
    child: Child,
    ws_url: String,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Start `bin` headless on a fresh profile with its DevTools endpoint on a free loopback
    /// port.
    pub async fn launch(bin: &Path) -> anyhow::Result<Self> {
        let profile = tempfile::tempdir()?;
        let (w, h) = VIEWPORT;
        let mut child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--no-default-browser-check",
                "--no-proxy-server",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                &format!("--window-size={w},{h}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("chromium stderr")?;
        let (tx, rx) = oneshot::channel();
        // Read stderr until the endpoint is announced, then keep draining it (a full pipe
        // would stall the browser); the last lines explain a failed start.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut tail = Vec::new();
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(Ok(url.trim().to_string()));
                    }
                } else if tx.is_some() {
                    tail.push(line);
                }
            }
            if let Some(tx) = tx.take() {
                let _ = tx.send(Err(tail.join("\n")));
            }
        });
        let ws_url = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(Ok(url))) => url,
            Ok(Ok(Err(output))) => bail!("chromium exited before listening:\n{output}"),
            Ok(Err(_)) => bail!("chromium's stderr closed"),
            Err(_) => bail!("chromium did not open its DevTools endpoint in {START_TIMEOUT:?}"),
        };
        let port = ws_url
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("DevTools URL {ws_url}"))?;
        Ok(Self {
            child,
            ws_url,
            port,
            _profile: profile,
        })
    }

    /// A new tab, sized [`VIEWPORT`], with page events and `prompt()` answers enabled.
    pub async fn new_page(&self) -> anyhow::Result<Page> {
        let browser = Cdp::connect(&self.ws_url).await?;
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let id = target["targetId"].as_str().context("targetId")?;
        let cdp = Cdp::connect(&format!("ws://127.0.0.1:{}/devtools/page/{id}", self.port)).await?;
        cdp.call("Page.enable", json!({})).await?;
        cdp.call("Runtime.enable", json!({})).await?;
        let (w, h) = VIEWPORT;
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": w, "height": h, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(Page { cdp })
    }

    /// Ask the browser to close, then make sure it is gone.
    pub async fn close(mut self) {
        if let Ok(browser) = Cdp::connect(&self.ws_url).await {
            let _ = browser.call("Browser.close", json!({})).await;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// One DevTools WebSocket: calls matched to their answers by id.
struct Cdp {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: Arc<AtomicU64>,
    /// The text `prompt()` dialogs are answered with.
    prompt_answer: Arc<Mutex<String>>,
    /// Uncaught exceptions of the page, as text.
    exceptions: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cdp {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cdp {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let (ws, _) = tokio::time::timeout(CALL_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .map_err(|_| anyhow!("connecting to {url}: timed out"))?
            .with_context(|| format!("connecting to {url}"))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let next = Arc::new(AtomicU64::new(1));
        let prompt_answer = Arc::new(Mutex::new(String::new()));
        let exceptions = Arc::new(Mutex::new(Vec::new()));
        let (p, n, answer, exc, out2) = (
            pending.clone(),
            next.clone(),
            prompt_answer.clone(),
            exceptions.clone(),
            out.clone(),
        );
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Ok(text) = msg.into_text() else { continue };
                let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p.lock().remove(&id) {
                        let answer = match v.get("error") {
                            Some(e) => Err(e.to_string()),
                            None => Ok(v["result"].clone()),
                        };
                        let _ = tx.send(answer);
                    }
                    continue;
                }
                match v["method"].as_str() {
                    // Answer dialogs at once: the page's script waits for them.
                    Some("Page.javascriptDialogOpening") => {
                        let id = n.fetch_add(1, Ordering::Relaxed);
                        let text = answer.lock().clone();
                        let call = json!({ "id": id, "method": "Page.handleJavaScriptDialog",
                            "params": { "accept": true, "promptText": text } });
                        let _ = out2.send(call.to_string());
                    }
                    Some("Runtime.exceptionThrown") => {
                        let d = &v["params"]["exceptionDetails"];
                        let text = d["exception"]["description"]
                            .as_str()
                            .or(d["text"].as_str())
                            .unwrap_or("exception");
                        exc.lock().push(text.to_string());
                    }
                    _ => {}
                }
            }
            // The socket closed: fail whatever still waits.
            for (_, tx) in p.lock().drain() {
                let _ = tx.send(Err("DevTools socket closed".into()));
            }
        });
        Ok(Self {
            out,
            pending,
            next,
            prompt_answer,
            exceptions,
            tasks: vec![writer, reader],
        })
    }

    async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        let msg = json!({ "id": id, "method": method, "params": params });
        self.out
            .send(msg.to_string())
            .map_err(|_| anyhow!("DevTools socket closed"))?;
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => bail!("{method}: {e}"),
            Ok(Err(_)) => bail!("{method}: no answer"),
            Err(_) => {
                self.pending.lock().remove(&id);
                bail!("{method}: no answer in {CALL_TIMEOUT:?}")
            }
        }
    }
}

/// A browser tab.
pub struct Page {
    cdp: Cdp,
}

impl Page {
    /// Go to `url` and wait until the new document has loaded.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let nav = self
            .cdp
            .call("Page.navigate", json!({ "url": url }))
            .await?;
        if let Some(e) = nav["errorText"].as_str() {
            bail!("navigating to {url}: {e}");
        }
        self.wait_loaded().await
    }

    /// Wait until the current document has loaded.
    pub async fn wait_loaded(&self) -> anyhow::Result<()> {
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(20),
        )
        .await
    }

    /// Evaluate `expression` in the page (promises awaited) and return its value as JSON.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .cdp
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!(
                "{expression}: {}",
                e["exception"]["description"]
                    .as_str()
                    .unwrap_or("exception")
            );
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluate `expression` until it is truthy (errors while a page loads count as not yet).
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(&format!("!!({expression})")).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => v.to_string(),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                bail!("waited {timeout:?} for `{expression}` (last: {last})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click the middle of the first element matching `selector` (of its first line, for
    /// text that wraps), with the mouse.
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); \
                 const r = e.getClientRects()[0] || e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await?;
        let (x, y) = match (at[0].as_f64(), at[1].as_f64()) {
            (Some(x), Some(y)) => (x, y),
            _ => bail!("no element {selector}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.cdp
                .call(
                    "Input.dispatchMouseEvent",
                    json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
                )
                .await?;
        }
        Ok(())
    }

    /// Focus the element matching `selector` and type `text` into it.
    pub async fn type_into(&self, selector: &str, text: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        let found = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({sel}); if (!e) return false; \
                 e.focus(); return true; }})()"
            ))
            .await?;
        if found != Value::Bool(true) {
            bail!("no element {selector}");
        }
        self.cdp
            .call("Input.insertText", json!({ "text": text }))
            .await?;
        Ok(())
    }

    /// The text `prompt()` dialogs opened from now on are answered with (accepted).
    pub fn answer_prompts_with(&self, text: &str) {
        *self.cdp.prompt_answer.lock() = text.to_string();
    }

    /// The page's uncaught exceptions so far.
    pub fn exceptions(&self) -> Vec<String> {
        self.cdp.exceptions.lock().clone()
    }

    /// A PNG of the viewport, written to `path`; returns its size in bytes.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<usize> {
        let shot = self
            .cdp
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().context("screenshot data")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &png)?;
        Ok(png.len())
    }
}
