//! The client side of the command line: how a command reaches the hub's HTTP API and prints
//! what it answers.

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

/// Why a call to the hub failed; each kind has its own exit code (README, "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// No answer at all: the hub is down, the address is wrong, or it timed out.
    #[error("cannot reach the hub at {hub}: {source}")]
    Unreachable {
        hub: String,
        #[source]
        source: reqwest::Error,
    },
    /// The hub answered with an error status (refused, not found, unauthorised, ...).
    #[error("the hub refused ({status}): {why}")]
    Refused {
        status: reqwest::StatusCode,
        why: String,
    },
    /// No token was given and none was found.
    #[error(
        "no token: pass --token, set SWITCHYARD_TOKEN, or run where switchyard-data/admin.token is"
    )]
    NoToken,
}

/// A command line that clap accepts but that does not say what to do; exits with
/// [`exit::USAGE`] like clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit codes of the command line.
pub mod exit {
    /// The command did what was asked.
    pub const OK: u8 = 0;
    /// The hub refused or did not find what was asked, or the command failed otherwise.
    pub const REFUSED: u8 = 1;
    /// The command line was wrong (also clap's code for usage errors).
    pub const USAGE: u8 = 2;
    /// The hub could not be reached.
    pub const UNREACHABLE: u8 = 3;
}

/// The exit code for an error a command ended with.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    if error.is::<UsageError>() {
        return exit::USAGE;
    }
    match error.downcast_ref::<HubError>() {
        Some(HubError::Unreachable { .. }) => exit::UNREACHABLE,
        Some(HubError::NoToken) => exit::USAGE,
        Some(HubError::Refused { .. }) | None => exit::REFUSED,
    }
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
            .map_err(|_| HubError::NoToken.into())
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
            .map_err(|source| HubError::Unreachable {
                hub: self.hub.clone(),
                source,
            })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let mut why = value
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
                .to_owned();
            // Refusals with a code (`tenant_in_use`, `quota_exceeded`, ...) say why in `detail`.
            if let Some(detail) = value.get("detail").and_then(Value::as_str) {
                why = format!("{why}: {detail}");
            }
            return Err(HubError::Refused { status, why }.into());
        }
        Ok(value)
    }
}
