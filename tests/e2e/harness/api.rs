//! HTTP helpers around the hub's JSON API.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::str_field;

/// One HTTP answer: status code, parsed JSON body (`Null` when the body is not JSON) and the
/// raw text.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// Fails the test unless the status is `status`; returns the JSON body.
    pub fn expect(self, status: u16, what: &str) -> Value {
        assert_eq!(
            self.status, status,
            "{what}: expected HTTP {status}, got {} with body {}",
            self.status, self.text
        );
        self.body
    }

    /// The `error` string of a JSON error body (fails the test when there is none).
    pub fn error(&self) -> &str {
        self.body
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!(
                    "HTTP {}: expected a JSON body with a string `error`, got {:?}",
                    self.status, self.text
                )
            })
    }
}

/// HTTP client for one hub, authenticated as admin unless told otherwise.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    admin: String,
}

impl Api {
    pub fn new(addr: SocketAddr, admin_token: &str) -> Api {
        let client = reqwest::Client::builder()
            // Loopback only: never route through a proxy from the environment.
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build HTTP client");
        Api {
            client,
            base: format!("http://{addr}"),
            admin: admin_token.to_string(),
        }
    }

    pub fn admin_token(&self) -> &str {
        &self.admin
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Resp {
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: request failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_ne!(
            status, 500,
            "{what}: the hub answered 500 (no request may produce one): {text}"
        );
        Resp { status, body, text }
    }

    fn builder(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// Any request with an optional token and an optional JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let what = format!("{method} {path}");
        let mut req = self.builder(method, path, token);
        if let Some(body) = body {
            req = req.json(body);
        }
        self.send(req, &what).await
    }

    /// A request whose body is sent verbatim as `application/json` (for malformed bodies).
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> Resp {
        let what = format!("{method} {path} (raw body)");
        let req = self
            .builder(method, path, token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(req, &what).await
    }

    /// GET as admin.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(Method::GET, path, Some(&self.admin), None)
            .await
    }

    /// POST a JSON body as admin.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.request(Method::POST, path, Some(&self.admin), Some(body))
            .await
    }

    /// POST a JSON body as admin; `None` when the request fails (the hub died under it), for
    /// tests that kill the hub under load. Returns the status and the JSON body (`Null` when
    /// the body is not JSON).
    pub async fn try_post(&self, path: &str, body: &Value) -> Option<(u16, Value)> {
        let resp = self
            .builder(Method::POST, path, Some(&self.admin))
            .json(body)
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let text = resp.text().await.ok()?;
        Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `POST /admin/tokens`: a new token for `agent_id` (asserts 201 and the answer's shape).
    pub async fn create_token(&self, agent_id: &str) -> String {
        let body = self
            .post("/admin/tokens", &json!({ "agent_id": agent_id }))
            .await
            .expect(201, "POST /admin/tokens");
        assert_eq!(
            body.get("agent_id").and_then(Value::as_str),
            Some(agent_id),
            "POST /admin/tokens must echo the agent_id: {body}"
        );
        let token = str_field(&body, "token");
        assert!(!token.is_empty(), "empty token in {body}");
        token.to_string()
    }

    /// `POST /admin/tenants`: a tenant named `name` with the default weight and no quotas
    /// (asserts 201).
    pub async fn create_tenant(&self, name: &str) {
        let body = self
            .post("/admin/tenants", &json!({ "name": name }))
            .await
            .expect(201, "POST /admin/tenants");
        assert_eq!(body["name"], name, "POST /admin/tenants: {body}");
    }

    /// `POST /admin/tokens` with a `role` and a `tenant`: the new token (asserts 201 and that
    /// the answer echoes both).
    pub async fn create_token_as(&self, agent_id: &str, role: &str, tenant: &str) -> String {
        let body = self
            .post(
                "/admin/tokens",
                &json!({ "agent_id": agent_id, "role": role, "tenant": tenant }),
            )
            .await
            .expect(201, "POST /admin/tokens");
        assert_eq!(
            (&body["agent_id"], &body["role"], &body["tenant"]),
            (&json!(agent_id), &json!(role), &json!(tenant)),
            "POST /admin/tokens must echo what it made: {body}"
        );
        str_field(&body, "token").to_string()
    }

    /// `POST /api/tasks` as admin; asserts 201 and the answer's shape; returns the task id.
    pub async fn submit(&self, task: Value) -> String {
        let body = self
            .post("/api/tasks", &task)
            .await
            .expect(201, &format!("POST /api/tasks {task}"));
        check_submit_answer(&body)
    }

    /// `POST /api/tasks/batch` as admin; asserts 201; returns the ids in submission order.
    pub async fn submit_batch(&self, tasks: Vec<Value>) -> Vec<String> {
        let n = tasks.len();
        let body = self
            .post("/api/tasks/batch", &json!({ "tasks": tasks }))
            .await
            .expect(201, "POST /api/tasks/batch");
        let ids: Vec<String> = body
            .get("task_ids")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("batch answer without `task_ids`: {body}"))
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("non-string task id in {body}"))
                    .to_string()
            })
            .collect();
        assert_eq!(ids.len(), n, "batch of {n} answered {body}");
        for id in &ids {
            assert_task_id(id);
        }
        ids
    }

    /// `GET /api/tasks/:id` as admin (asserts 200).
    pub async fn get_task(&self, id: &str) -> Value {
        let task = self
            .get(&format!("/api/tasks/{id}"))
            .await
            .expect(200, &format!("GET /api/tasks/{id}"));
        assert_eq!(
            task.get("id").and_then(Value::as_str),
            Some(id),
            "GET /api/tasks/{id} returned another task: {task}"
        );
        task
    }

    /// `GET /api/tasks?<query>` as admin (asserts 200); returns the whole answer.
    pub async fn list_tasks(&self, query: &str) -> Value {
        self.get(&format!("/api/tasks?{query}"))
            .await
            .expect(200, &format!("GET /api/tasks?{query}"))
    }

    /// `GET /health` without a token (asserts 200).
    pub async fn health(&self) -> Value {
        self.request(Method::GET, "/health", None, None)
            .await
            .expect(200, "GET /health")
    }

    /// `GET /api/tasks/stats` as admin (asserts 200).
    pub async fn task_stats(&self) -> Value {
        self.get("/api/tasks/stats")
            .await
            .expect(200, "GET /api/tasks/stats")
    }

    /// `GET /api/policy` as admin (asserts 200): the policy in force and its counters.
    pub async fn policy(&self) -> Value {
        self.get("/api/policy").await.expect(200, "GET /api/policy")
    }

    /// `PUT /api/policy` with a JSON body (`{"builtin"|"path": …, "config": …}`) as admin.
    pub async fn put_policy(&self, body: &Value) -> Resp {
        self.request(Method::PUT, "/api/policy", Some(&self.admin), Some(body))
            .await
    }

    /// `PUT /api/policy` uploading a component (`application/wasm`) as admin, with its
    /// configuration in the `config` query parameter when given.
    pub async fn put_policy_wasm(&self, component: Vec<u8>, config: Option<&Value>) -> Resp {
        self.put_wasm("/api/policy", component, config).await
    }

    /// PUT of a component (`application/wasm`) to `path` as admin, with its configuration in
    /// the `config` query parameter when given (`/api/policy`, `/api/policy/shadow`).
    pub async fn put_wasm(&self, path: &str, component: Vec<u8>, config: Option<&Value>) -> Resp {
        let mut req = self
            .builder(Method::PUT, path, Some(&self.admin))
            .header(reqwest::header::CONTENT_TYPE, "application/wasm")
            .body(component);
        if let Some(config) = config {
            req = req.query(&[("config", config.to_string())]);
        }
        self.send(req, &format!("PUT {path} (application/wasm)"))
            .await
    }
}

/// Checks a `POST /api/tasks` 201 answer: `{"status":"queued","task_id","priority","created_at"}`.
pub fn check_submit_answer(body: &Value) -> String {
    assert_eq!(
        body.get("status").and_then(Value::as_str),
        Some("queued"),
        "submit answer: {body}"
    );
    assert!(
        body.get("priority")
            .and_then(Value::as_u64)
            .is_some_and(|p| p <= 3),
        "submit answer needs an integer priority 0-3: {body}"
    );
    assert!(
        body.get("created_at").and_then(Value::as_u64).is_some(),
        "submit answer needs an integer created_at: {body}"
    );
    let id = str_field(body, "task_id").to_string();
    assert_task_id(&id);
    id
}

/// A task id is "task-" followed by 16 hex digits.
pub fn assert_task_id(id: &str) {
    let hex = id.strip_prefix("task-").unwrap_or("");
    assert!(
        hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "task id must be \"task-\" + 16 hex digits, got {id:?}"
    );
}
