//! The client side of the command line: how a command reaches the hub's HTTP API and prints
//! what it answers.

use anyhow::{bail, Context};
use clap::Args;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The hub's base URL.
    #[arg(long, env = "SWITCHYARD_HUB", default_value = "http://127.0.0.1:4000")]
    pub hub: String,
    /// The token to use (default: ./switchyard-data/admin.token when it exists).
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

pub(super) fn print(value: Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// Percent-encodes a path or query component: everything but RFC 3986's unreserved characters.
pub(super) fn encode(text: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(text, RESERVED).to_string()
}

impl ClientArgs {
    pub(super) fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let fallback = Path::new("switchyard-data").join("admin.token");
        std::fs::read_to_string(&fallback)
            .map(|t| t.trim().to_owned())
            .map_err(|_| anyhow::anyhow!("no token: pass --token, set SWITCHYARD_TOKEN, or run where switchyard-data/admin.token is"))
    }

    /// Calls the hub; a refusal becomes an error carrying the hub's message.
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.hub.trim_end_matches('/'), path);
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Calls the hub with `bytes` as the body, sent as `content_type`, and `query` (already
    /// encoded) after the path; a refusal becomes an error carrying the hub's message.
    pub(super) async fn upload(
        &self,
        method: &str,
        path: &str,
        query: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let mut url = format!("{}{}", self.hub.trim_end_matches('/'), path);
        if !query.is_empty() {
            url = format!("{url}?{query}");
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.token()?)
            .timeout(Duration::from_secs(30))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the hub at {}", self.hub))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let why = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            bail!("the hub refused ({status}): {why}");
        }
        Ok(value)
    }
}
