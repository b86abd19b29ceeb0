//! A headless Chromium driven over the W3C WebDriver protocol (chromedriver), for the dashboard's
//! browser tests. The protocol is a handful of JSON calls over loopback HTTP, spoken here with
//! the suite's own HTTP client.
//!
//! Chromium and chromedriver come from the Debian packages `chromium` and `chromium-driver`
//! (`scripts/setup.sh` installs them). Without them [`Browser::start`] answers `None` and the
//! test says it skips, except under `CI=true`, where it fails.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::hub::unique_name;
use super::poll_until;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key WebDriver names an element reference with.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long chromedriver and Chromium may take to start on a busy machine.
const BROWSER_START: Duration = Duration::from_secs(60);

/// One chromedriver process with one Chromium session; both end on drop.
pub struct Browser {
    driver: Child,
    client: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (after saying why) when
    /// they are not installed and the suite is not running under CI.
    pub async fn start(test: &str) -> Option<Browser> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                let why = format!(
                    "{test}: {program} is missing (Debian packages `chromium` and `chromium-driver`; scripts/setup.sh installs them)"
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{why}: the browser tests must run under CI");
                }
                eprintln!("SKIPPED {why}");
                return None;
            }
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("build HTTP client");
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            driver,
            client,
            session: String::new(),
            base,
            profile: std::env::temp_dir().join(unique_name("switchyard-chromium")),
        };
        poll_until("chromedriver to answer", BROWSER_START, || async {
            match browser
                .client
                .get(format!("{}/status", browser.base))
                .send()
                .await
            {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("HTTP {}", response.status())),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        let profile = browser.profile.display().to_string();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={profile}"),
                ],
            },
        }}});
        let answer = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a WebDriver session id in {answer}"))
            .to_owned();
        Some(browser)
    }

    /// One WebDriver command; answers its `value`, failing the test on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let mut request = self.client.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: HTTP {status}: {answer}"
        );
        answer["value"].clone()
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({"url": url})),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page; answers its result.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The element `css` selects (it must exist).
    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                "POST",
                &self.session_path("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("an element for {css}: {found}"))
            .to_owned()
    }

    /// Clicks the element `css` selects, as a user would.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into the element `css` selects, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        let path = self.session_path(&format!("/element/{element}"));
        self.call("POST", &format!("{path}/clear"), Some(json!({})))
            .await;
        self.call(
            "POST",
            &format!("{path}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Chooses the file at `file` in the file input `css` selects.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let element = self.element(css).await;
        let path = self.session_path(&format!("/element/{element}/value"));
        let text = file.display().to_string();
        self.call("POST", &path, Some(json!({"text": text}))).await;
    }

    /// Waits until `script` answers something other than `null`/`false` in the page; answers
    /// it. `what` names the condition when the wait times out.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Value,
    ) -> Value {
        poll_until(what, timeout, || async {
            let value = self.eval(script, args.clone()).await;
            match value {
                Value::Null | Value::Bool(false) => Err(format!("{value}")),
                value => Ok(value),
            }
        })
        .await
    }

    /// Saves a screenshot of the window as `target/screenshots/<name>.png`; answers its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self
            .call("GET", &self.session_path("/screenshot"), None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().expect("a base64 screenshot"))
            .expect("a screenshot in base64");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
        std::fs::create_dir_all(&dir).expect("create target/screenshots");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write the screenshot");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session ends its Chromium (killing chromedriver alone could leave Chromium
        // running). Drop cannot wait on the async client, and may run while a test panics: a
        // plain blocking request on a socket does it.
        if !self.session.is_empty() {
            let _ = delete_session(&self.base, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `DELETE /session/<id>`, blocking, within a few seconds.
fn delete_session(base: &str, session: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(addr)?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        socket,
        "DELETE /session/{session} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer)?;
    Ok(())
}

/// A loopback port free a moment ago, for chromedriver (which cannot report one it chose).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
