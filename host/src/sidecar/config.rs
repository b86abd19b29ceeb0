//! The sidecar's configuration: a TOML file (`--config`), overridden by flags.
//!
//! Everything is checked once, at start-up, and every refusal names the field it is about, so a
//! bad config stops the sidecar with a message instead of a sidecar that connects and then never
//! runs anything (AgentCom's hung forever when no worker was configured).
//!
//! Longer than most files (about 600 lines of code, the rest its tests) and kept whole on
//! purpose: it is one idea, the table of keys, each with its flag, its default and its check,
//! and the file and the flags must be read side by side to see what a key does.

use clap::Args;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Defaults of the agent protocol's client side (AgentCom's sidecar used the same).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PONG_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_MIN: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(60);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(15);
/// A task that runs longer than this is killed unless the config says otherwise.
const TASK_TIMEOUT: Duration = Duration::from_secs(3600);
/// AgentCom's file contract: the worker confirms with `<task_id>.started` within this.
const CONFIRMATION_TIMEOUT: Duration = Duration::from_secs(30);

/// `switchyard agent`: flags. Each one given replaces what the config file says.
#[derive(Debug, Clone, Default, Args)]
pub struct AgentArgs {
    /// The configuration file (TOML); see docs/agent.example.toml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The hub: ws://HOST:PORT/ws, or its base URL http://HOST:PORT.
    #[arg(long)]
    pub hub_url: Option<String>,
    /// This agent's id (the one its token was made for).
    #[arg(long)]
    pub agent_id: Option<String>,
    /// The agent's token. Prefer --token-file or the environment: flags show in `ps`.
    #[arg(long, env = "SWITCHYARD_AGENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the agent's token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The agent's display name.
    #[arg(long)]
    pub name: Option<String>,
    /// A capability; repeat for several (replaces the file's list).
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
    /// The folder where the task in flight and unreported results are kept.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The longest a task may run (e.g. 90s, 30m, 2h; "none" for no limit).
    #[arg(long)]
    pub timeout: Option<String>,
    /// The worker command and its arguments, after `--` (replaces the file's worker).
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// A refused configuration; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{field}` is missing: {hint}")]
    Missing {
        field: &'static str,
        hint: &'static str,
    },
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The checked configuration the sidecar runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// A `ws://` URL.
    pub hub_url: String,
    pub agent_id: String,
    pub token: String,
    pub name: Option<String>,
    pub capabilities: Vec<String>,
    pub state_dir: PathBuf,
    pub worker: Worker,
    pub timing: Timing,
}

/// What runs a task.
#[derive(Debug, Clone)]
pub enum Worker {
    /// A command run once per task, without a shell.
    Command(CommandWorker),
    /// AgentCom's file contract: a wake command, then result files.
    Files(FileWorker),
}

/// A program and how to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// argv: the program (a name looked up on PATH, or an absolute path) and its arguments.
    pub argv: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Added to the sidecar's own environment.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct CommandWorker {
    pub program: Program,
    /// None: no limit.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct FileWorker {
    /// Run once per task to tell the worker there is work; it should return promptly.
    pub wake: Program,
    /// Where the worker writes `<task_id>.started` and `<task_id>.json`.
    pub results_dir: PathBuf,
    /// How long the worker has to write `<task_id>.started` after the wake.
    pub confirmation_timeout: Duration,
    /// How long the whole task may take. None: no limit.
    pub timeout: Option<Duration>,
}

/// The protocol's timings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub progress_interval: Duration,
}

// ---- the file as written -----------------------------------------------------------------

/// Unknown keys are refused: a misspelt key silently ignored is a setting silently not applied.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    hub_url: Option<String>,
    agent_id: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    name: Option<String>,
    capabilities: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    command: Option<CommandTable>,
    file_contract: Option<FileContractTable>,
    connection: Option<ConnectionTable>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandTable {
    argv: Vec<String>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<DurationText>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileContractTable {
    wake: Vec<String>,
    results_dir: Option<PathBuf>,
    cwd: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    confirmation_timeout: Option<DurationText>,
    timeout: Option<DurationText>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectionTable {
    ping_interval: Option<DurationText>,
    pong_timeout: Option<DurationText>,
    reconnect_min: Option<DurationText>,
    reconnect_max: Option<DurationText>,
    progress_interval: Option<DurationText>,
}

/// A duration as written: a number of seconds, or text with a unit ("250ms", "30s", "5m", "2h").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationText {
    Seconds(u64),
    Text(String),
}

/// Parses a duration ([`crate::duration::parse`]); `Ok(None)` is "none" (no limit), allowed
/// only where `allow_none`.
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    crate::duration::parse(text).map(Some)
}

impl DurationText {
    fn resolve(&self, field: &str, allow_none: bool) -> Result<Option<Duration>, ConfigError> {
        let parsed = match self {
            DurationText::Seconds(seconds) => Some(Duration::from_secs(*seconds)),
            DurationText::Text(text) => {
                parse_duration(text).map_err(|reason| invalid(field, reason))?
            }
        };
        match parsed {
            None if !allow_none => Err(invalid(field, "must be a duration, not \"none\"")),
            Some(d) if d.is_zero() => Err(invalid(field, "must be longer than zero")),
            other => Ok(other),
        }
    }
}

fn duration_or(
    value: Option<&DurationText>,
    field: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match value {
        Some(text) => Ok(text.resolve(field, false)?.unwrap_or(default)),
        None => Ok(default),
    }
}

fn limit_or(
    value: Option<&DurationText>,
    field: &str,
    default: Duration,
) -> Result<Option<Duration>, ConfigError> {
    match value {
        Some(text) => text.resolve(field, true),
        None => Ok(Some(default)),
    }
}

// ---- resolution ----------------------------------------------------------------------------

impl AgentConfig {
    /// Reads the file named by `--config` (if any), applies the flags, and checks the result.
    pub fn load(args: &AgentArgs) -> Result<AgentConfig, ConfigError> {
        let (file, base) = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                let file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                // Paths in the file are relative to the file, so it can be moved with its
                // worker scripts and started from anywhere.
                let base = path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("."));
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::from(".")),
        };
        resolve(file, &base, args)
    }
}

fn resolve(file: FileConfig, base: &Path, args: &AgentArgs) -> Result<AgentConfig, ConfigError> {
    let in_file = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            base.join(p)
        }
    };

    let hub_url = args
        .hub_url
        .clone()
        .or(file.hub_url)
        .ok_or(ConfigError::Missing {
            field: "hub_url",
            hint: "set it in the config file or pass --hub-url (e.g. ws://127.0.0.1:4000/ws)",
        })?;
    let hub_url = websocket_url(&hub_url)?;

    let agent_id = args
        .agent_id
        .clone()
        .or(file.agent_id)
        .ok_or(ConfigError::Missing {
            field: "agent_id",
            hint: "set it in the config file or pass --agent-id",
        })?;
    if !crate::wire::http::valid_agent_id(&agent_id) {
        return Err(invalid(
            "agent_id",
            "must be 1 to 128 characters without control characters",
        ));
    }

    let token = match (&args.token, &args.token_file) {
        (Some(token), _) => token.clone(),
        (None, Some(path)) => read_token(path, "--token-file")?,
        (None, None) => match (file.token, &file.token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid("token", "set `token` or `token_file`, not both"));
            }
            (Some(token), None) => token,
            (None, Some(path)) => read_token(&in_file(path), "token_file")?,
            (None, None) => {
                return Err(ConfigError::Missing {
                    field: "token",
                    hint: "set `token` or `token_file` in the config file, or pass --token-file \
                           or SWITCHYARD_AGENT_TOKEN",
                })
            }
        },
    };
    let token = token.trim().to_owned();
    if token.is_empty() {
        return Err(invalid("token", "is empty"));
    }

    let capabilities = if args.capabilities.is_empty() {
        file.capabilities.unwrap_or_default()
    } else {
        args.capabilities.clone()
    };
    if let Some(i) = capabilities.iter().position(|c| c.trim().is_empty()) {
        return Err(invalid(format!("capabilities[{i}]"), "is empty"));
    }

    let state_dir = match (&args.state_dir, &file.state_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(dir)) => in_file(dir),
        (None, None) => base.join("switchyard-agent-state"),
    };

    let cli_timeout = match &args.timeout {
        Some(text) => Some(DurationText::Text(text.clone()).resolve("--timeout", true)?),
        None => None,
    };
    let worker = if !args.command.is_empty() {
        let program = program(
            args.command.clone(),
            None,
            BTreeMap::new(),
            None,
            Path::new("."),
        )?;
        let timeout = cli_timeout.unwrap_or(Some(TASK_TIMEOUT));
        Worker::Command(CommandWorker { program, timeout })
    } else {
        match (file.command, file.file_contract) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "command",
                    "set [command] or [file_contract], not both: one worker per agent",
                ))
            }
            (Some(table), None) => {
                let cwd = table.cwd.as_ref().map(in_file);
                let program = program(table.argv, cwd, table.env, Some(("command", "argv")), base)?;
                let timeout = match cli_timeout {
                    Some(timeout) => timeout,
                    None => limit_or(table.timeout.as_ref(), "command.timeout", TASK_TIMEOUT)?,
                };
                Worker::Command(CommandWorker { program, timeout })
            }
            (None, Some(table)) => {
                let cwd = table.cwd.as_ref().map(in_file);
                let wake = program(
                    table.wake,
                    cwd,
                    table.env,
                    Some(("file_contract", "wake")),
                    base,
                )?;
                let results_dir = table
                    .results_dir
                    .as_ref()
                    .map(in_file)
                    .unwrap_or_else(|| base.join("results"));
                let confirmation_timeout = duration_or(
                    table.confirmation_timeout.as_ref(),
                    "file_contract.confirmation_timeout",
                    CONFIRMATION_TIMEOUT,
                )?;
                let timeout = match cli_timeout {
                    Some(timeout) => timeout,
                    None => limit_or(
                        table.timeout.as_ref(),
                        "file_contract.timeout",
                        TASK_TIMEOUT,
                    )?,
                };
                Worker::Files(FileWorker {
                    wake,
                    results_dir,
                    confirmation_timeout,
                    timeout,
                })
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    field: "command",
                    hint: "no worker is configured: set [command] argv (or [file_contract] wake) \
                           in the config file, or pass the command after `--`",
                })
            }
        }
    };

    let connection = file.connection.unwrap_or_default();
    let timing = Timing {
        ping_interval: duration_or(
            connection.ping_interval.as_ref(),
            "connection.ping_interval",
            PING_INTERVAL,
        )?,
        pong_timeout: duration_or(
            connection.pong_timeout.as_ref(),
            "connection.pong_timeout",
            PONG_TIMEOUT,
        )?,
        reconnect_min: duration_or(
            connection.reconnect_min.as_ref(),
            "connection.reconnect_min",
            RECONNECT_MIN,
        )?,
        reconnect_max: duration_or(
            connection.reconnect_max.as_ref(),
            "connection.reconnect_max",
            RECONNECT_MAX,
        )?,
        progress_interval: duration_or(
            connection.progress_interval.as_ref(),
            "connection.progress_interval",
            PROGRESS_INTERVAL,
        )?,
    };
    if timing.reconnect_min > timing.reconnect_max {
        return Err(invalid(
            "connection.reconnect_min",
            "must not be longer than connection.reconnect_max",
        ));
    }

    Ok(AgentConfig {
        hub_url,
        agent_id,
        token,
        name: args.name.clone().or(file.name),
        capabilities,
        state_dir,
        worker,
        timing,
    })
}

fn read_token(path: &Path, field: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))
}

/// Checks argv and makes a relative program path absolute (relative to `base`), so it means
/// the same whatever the worker's working folder is. `section` is the config table, for
/// messages (`None`: the command came after `--`).
fn program(
    mut argv: Vec<String>,
    cwd: Option<PathBuf>,
    env: BTreeMap<String, String>,
    section: Option<(&str, &str)>,
    base: &Path,
) -> Result<Program, ConfigError> {
    let field = |key: &str| match section {
        Some((table, argv_key)) if key == "argv" => format!("{table}.{argv_key}"),
        Some((table, _)) => format!("{table}.{key}"),
        None => "the command after --".to_owned(),
    };
    let Some(first) = argv.first_mut() else {
        return Err(invalid(
            field("argv"),
            "is empty: give the program and its arguments as a list",
        ));
    };
    if first.is_empty() {
        return Err(invalid(format!("{}[0]", field("argv")), "is empty"));
    }
    if first.contains('/') {
        let path = Path::new(first.as_str());
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            base.join(path)
        };
        if !path.is_file() {
            return Err(invalid(
                format!("{}[0]", field("argv")),
                format!("{} does not exist", path.display()),
            ));
        }
        *first = path.to_string_lossy().into_owned();
    } else if !on_path(first) {
        return Err(invalid(
            format!("{}[0]", field("argv")),
            format!("`{first}` is not found on PATH"),
        ));
    }
    if let Some(dir) = &cwd {
        if !dir.is_dir() {
            return Err(invalid(
                field("cwd"),
                format!("{} is not a folder", dir.display()),
            ));
        }
    }
    if let Some(key) = env
        .keys()
        .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return Err(invalid(
            field("env"),
            format!("{key:?} is not a valid variable name"),
        ));
    }
    Ok(Program { argv, cwd, env })
}

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
        .unwrap_or(false)
}

/// The hub's WebSocket URL: `ws://…` as given, or `http://HOST:PORT[/prefix]` turned into
/// `ws://HOST:PORT[/prefix]/ws`.
fn websocket_url(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let ws = if url.starts_with("ws://") {
        url.to_owned()
    } else if let Some(rest) = url.strip_prefix("http://") {
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') && rest.ends_with("/ws") {
            format!("ws://{rest}")
        } else {
            format!("ws://{rest}/ws")
        }
    } else if url.starts_with("wss://") || url.starts_with("https://") {
        return Err(invalid(
            "hub_url",
            "TLS is not built into this sidecar; reach the hub over ws:// (e.g. through a \
             TLS tunnel that ends on this machine)",
        ));
    } else {
        return Err(invalid(
            "hub_url",
            format!("{url:?} must start with ws:// or http://"),
        ));
    };
    ws.as_str()
        .into_client_request()
        .map_err(|e| invalid("hub_url", format!("{url:?} is not a valid URL: {e}")))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, args: AgentArgs) -> Result<AgentConfig, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "test.toml".into(),
            message: e.to_string(),
        })?;
        resolve(file, Path::new("/nonexistent-base"), &args)
    }

    const GOOD: &str = r#"
        hub_url = "ws://127.0.0.1:4000/ws"
        agent_id = "worker-1"
        token = "secret"
        capabilities = ["rust", "llm"]
        state_dir = "/var/lib/agent"
        [command]
        argv = ["sh", "-c", "echo hi"]
        timeout = "90s"
        env = { LEVEL = "info" }
        [connection]
        ping_interval = 5
        pong_timeout = "1500ms"
    "#;

    fn error(text: &str) -> String {
        load(text, AgentArgs::default()).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_loads_with_defaults() {
        let config = load(GOOD, AgentArgs::default()).unwrap();
        assert_eq!(config.hub_url, "ws://127.0.0.1:4000/ws");
        assert_eq!(config.capabilities, ["rust", "llm"]);
        assert_eq!(config.state_dir, PathBuf::from("/var/lib/agent"));
        let Worker::Command(command) = &config.worker else {
            panic!("{:?}", config.worker)
        };
        assert_eq!(command.program.argv, ["sh", "-c", "echo hi"]);
        assert_eq!(command.program.env["LEVEL"], "info");
        assert_eq!(command.timeout, Some(Duration::from_secs(90)));
        assert_eq!(config.timing.ping_interval, Duration::from_secs(5));
        assert_eq!(config.timing.pong_timeout, Duration::from_millis(1500));
        assert_eq!(config.timing.reconnect_min, RECONNECT_MIN);
        assert_eq!(config.timing.reconnect_max, RECONNECT_MAX);
    }

    #[test]
    fn flags_override_the_file() {
        let args = AgentArgs {
            hub_url: Some("http://10.0.0.1:9000/".into()),
            agent_id: Some("other".into()),
            token: Some(" from-flag \n".into()),
            capabilities: vec!["gpu".into()],
            timeout: Some("none".into()),
            command: vec!["true".into()],
            ..AgentArgs::default()
        };
        let config = load(GOOD, args).unwrap();
        assert_eq!(config.hub_url, "ws://10.0.0.1:9000/ws");
        assert_eq!(config.agent_id, "other");
        assert_eq!(config.token, "from-flag");
        assert_eq!(config.capabilities, ["gpu"]);
        let Worker::Command(command) = &config.worker else {
            panic!()
        };
        assert_eq!(command.program.argv, ["true"]);
        assert_eq!(command.timeout, None);
    }

    #[test]
    fn errors_name_the_field() {
        let without = |key: &str| {
            GOOD.lines()
                .filter(|l| !l.trim_start().starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(error(&without("agent_id")).contains("`agent_id` is missing"));
        assert!(error(&without("hub_url")).contains("`hub_url` is missing"));
        assert!(error(&without("token")).contains("`token` is missing"));
        let no_worker = GOOD.split("[command]").next().unwrap();
        assert!(
            error(no_worker).contains("no worker is configured"),
            "{}",
            error(no_worker)
        );
        assert!(error(&GOOD.replace("90s", "soon")).contains("`command.timeout`"));
        assert!(error(&GOOD.replace("\"90s\"", "0")).contains("longer than zero"));
        assert!(error(&GOOD.replace("ws://", "wss://")).contains("`hub_url`"));
        assert!(error(&GOOD.replace("ws://127.0.0.1:4000/ws", "ftp://x")).contains("`hub_url`"));
        assert!(
            error(&GOOD.replace("[\"sh\"", "[\"no-such-program-anywhere\""))
                .contains("`command.argv[0]`")
        );
        assert!(
            error(&GOOD.replace("[\"sh\", \"-c\", \"echo hi\"]", "[]")).contains("`command.argv`")
        );
        assert!(error(&GOOD.replace("\"rust\"", "\"\"")).contains("`capabilities[0]`"));
        assert!(error(&GOOD.replace("agent_id", "agent_idd")).contains("agent_idd"));
        assert!(
            error(&GOOD.replace("token = \"secret\"", "token = \"s\"\ntoken_file = \"t\""))
                .contains("not both")
        );
        let both = format!("{GOOD}\n[file_contract]\nwake = [\"true\"]\n");
        assert!(error(&both).contains("not both"));
    }

    #[test]
    fn file_contract_takes_its_defaults() {
        let text = GOOD.split("[command]").next().unwrap().to_owned()
            + "[file_contract]\nwake = [\"true\"]\nconfirmation_timeout = \"2s\"\n";
        let config = load(&text, AgentArgs::default()).unwrap();
        let Worker::Files(files) = &config.worker else {
            panic!()
        };
        assert_eq!(
            files.results_dir,
            PathBuf::from("/nonexistent-base/results")
        );
        assert_eq!(files.confirmation_timeout, Duration::from_secs(2));
        assert_eq!(files.timeout, Some(TASK_TIMEOUT));
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let example = include_str!("../../../docs/agent.example.toml");
        // Its token file does not exist here: a token flag stands in for it.
        let args = AgentArgs {
            token: Some("t".into()),
            ..AgentArgs::default()
        };
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        let config = resolve(toml::from_str(example).unwrap(), &docs, &args).unwrap();
        assert_eq!(config.agent_id, "worker-1");
        assert_eq!(config.state_dir, docs.join("state/worker-1"));
        let Worker::Command(command) = &config.worker else {
            panic!("{:?}", config.worker)
        };
        assert_eq!(command.timeout, Some(Duration::from_secs(1800)));
        assert_eq!(config.timing.ping_interval, PING_INTERVAL);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("250ms"),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(parse_duration("30"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(
            parse_duration("1.5s"),
            Ok(Some(Duration::from_millis(1500)))
        );
        assert_eq!(parse_duration("5m"), Ok(Some(Duration::from_secs(300))));
        assert_eq!(parse_duration("2h"), Ok(Some(Duration::from_secs(7200))));
        assert_eq!(parse_duration("None"), Ok(None));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn hub_urls() {
        assert_eq!(websocket_url("ws://h:1/ws").unwrap(), "ws://h:1/ws");
        assert_eq!(websocket_url("http://h:1").unwrap(), "ws://h:1/ws");
        assert_eq!(websocket_url("http://h:1/hub/").unwrap(), "ws://h:1/hub/ws");
        assert_eq!(
            websocket_url("http://h:1/hub/ws").unwrap(),
            "ws://h:1/hub/ws"
        );
        assert!(websocket_url("https://h").is_err());
        assert!(websocket_url("h:1").is_err());
    }
}
