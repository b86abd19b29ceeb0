//! Roles and tenants decide what a token may do and see: a matrix of client A, agent A, client B
//! and admin against every task route (and the agents, policy and admin routes); a client or
//! agent gets another tenant's task as the 404 an unknown id gets, and never sees it listed,
//! counted or streamed; an agent reads what it was assigned in any tenant; a client token
//! cannot identify over `/ws`.

use reqwest::Method;
use serde_json::{json, Value};
use switchyard::wire::events::{Parser, Received};

use crate::harness::api::{Api, Resp};
use crate::harness::{str_field, Agent, Hub, HubOpts, RECV_TIMEOUT};

/// A task id no task has.
const UNKNOWN: &str = "task-00000000000fffff";

/// The parties of every test: tenants `a` and `b`, a client of each and an agent of `a`.
struct Parties {
    hub: Hub,
    client_a: String,
    agent_a: String,
    client_b: String,
}

impl Parties {
    async fn start() -> Parties {
        let hub = Hub::start(HubOpts::default()).await;
        let api = hub.api();
        api.create_tenant("a").await;
        api.create_tenant("b").await;
        let client_a = api.create_token_as("ci-a", "client", "a").await;
        let agent_a = api.create_token_as("w-a", "agent", "a").await;
        let client_b = api.create_token_as("ci-b", "client", "b").await;
        Parties {
            hub,
            client_a,
            agent_a,
            client_b,
        }
    }

    fn api(&self) -> &Api {
        self.hub.api()
    }

    /// Four callers by name, with their tokens.
    fn callers(&self) -> [(&'static str, &str); 4] {
        [
            ("client A", &self.client_a),
            ("agent A", &self.agent_a),
            ("client B", &self.client_b),
            ("admin", self.api().admin_token()),
        ]
    }

    async fn call(&self, token: &str, method: Method, path: &str, body: Option<&Value>) -> Resp {
        self.api().request(method, path, Some(token), body).await
    }

    /// Submits one task with `token`; returns its id.
    async fn submit(&self, token: &str, task: Value) -> String {
        let body = self
            .call(token, Method::POST, "/api/tasks", Some(&task))
            .await
            .expect(201, "POST /api/tasks");
        str_field(&body, "task_id").to_owned()
    }

    /// `GET /api/tasks/stats` with `query` as `token`.
    async fn stats(&self, token: &str, query: &str) -> Value {
        let path = format!("/api/tasks/stats{query}");
        self.call(token, Method::GET, &path, None)
            .await
            .expect(200, &path)
    }

    /// `GET /api/tasks/dead-letter` as `token`.
    async fn dead_letter(&self, token: &str) -> Value {
        self.call(token, Method::GET, "/api/tasks/dead-letter", None)
            .await
            .expect(200, "dead letter")
    }

    /// Every task `token` lists, page by page (`limit` a page), checking that no page but the
    /// last comes back short.
    async fn list_all(&self, token: &str, query: &str, limit: usize) -> Vec<Value> {
        let mut tasks = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut path = format!("/api/tasks?limit={limit}{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = self
                .call(token, Method::GET, &path, None)
                .await
                .expect(200, &path);
            let listed = page["tasks"].as_array().expect("tasks").clone();
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(
                        listed.len(),
                        limit,
                        "a page before the last is full: {page}"
                    );
                    tasks.extend(listed);
                    cursor = Some(next.to_owned());
                }
                None => {
                    tasks.extend(listed);
                    return tasks;
                }
            }
        }
        panic!("listing {query} did not end");
    }
}

fn ids(tasks: &[Value]) -> Vec<&str> {
    tasks.iter().map(|t| str_field(t, "id")).collect()
}

/// The 404 of a task id no caller can see.
fn not_found(id: &str) -> Value {
    json!({"error": "task_not_found", "task_id": id})
}

/// The status of `GET /api/events` for `token` (the stream is dropped unread).
async fn events_status(hub: &Hub, token: &str) -> u16 {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/api/events", hub.addr()))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /api/events")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_route() {
    let p = Parties::start().await;
    let task_a = p.submit(&p.client_a, json!({"description": "a's"})).await;
    let task_b = p.submit(&p.client_b, json!({"description": "b's"})).await;
    let one = json!({"description": "d"});
    let batch = json!({"tasks": [{"description": "d1"}, {"description": "d2"}]});
    let new_token = json!({"agent_id": "x"});
    let forbidden = 403;
    // (method, path, body, [client A, agent A, client B, admin]). Every task route names a
    // task of tenant A; client B must get exactly what an unknown id gets.
    let get_a = format!("/api/tasks/{task_a}");
    let retry_a = format!("/api/tasks/{task_a}/retry");
    let requeue_a = format!("/api/tasks/{task_a}/requeue");
    let shadow = p.api().get("/api/policy/shadow").await.status;
    let matrix: Vec<(Method, &str, Option<&Value>, [u16; 4])> = vec![
        (Method::POST, "/api/tasks", Some(&one), [201, 201, 201, 201]),
        (
            Method::POST,
            "/api/tasks/batch",
            Some(&batch),
            [201, 201, 201, 201],
        ),
        (Method::GET, "/api/tasks", None, [200, 200, 200, 200]),
        (Method::GET, &get_a, None, [200, 200, 404, 200]),
        // Queued: visible to the client and admin, who may retry, but only dead letters go back.
        (Method::POST, &retry_a, None, [409, forbidden, 404, 409]),
        // Only assigned tasks can be requeued, and only by an admin.
        (
            Method::POST,
            &requeue_a,
            None,
            [forbidden, forbidden, forbidden, 409],
        ),
        (
            Method::GET,
            "/api/tasks/dead-letter",
            None,
            [200, 200, 200, 200],
        ),
        (Method::GET, "/api/tasks/stats", None, [200, 200, 200, 200]),
        (
            Method::GET,
            "/api/agents",
            None,
            [forbidden, 200, forbidden, 200],
        ),
        (Method::GET, "/api/policy", None, [200, 200, 200, 200]),
        (
            Method::GET,
            "/api/policy/shadow",
            None,
            [forbidden, shadow, forbidden, shadow],
        ),
        // 0: not asked (an admin's policy change is not this test's).
        (
            Method::PUT,
            "/api/policy",
            Some(&one),
            [forbidden, forbidden, forbidden, 0],
        ),
        (
            Method::GET,
            "/admin/tokens",
            None,
            [forbidden, forbidden, forbidden, 200],
        ),
        (
            Method::GET,
            "/admin/audit",
            None,
            [forbidden, forbidden, forbidden, 200],
        ),
        (
            Method::GET,
            "/admin/tenants",
            None,
            [forbidden, forbidden, forbidden, 200],
        ),
        (
            Method::POST,
            "/admin/tokens",
            Some(&new_token),
            [forbidden, forbidden, forbidden, 201],
        ),
    ];
    for (method, path, body, expected) in &matrix {
        for ((who, token), status) in p.callers().into_iter().zip(expected) {
            if *status == 0 {
                continue;
            }
            let resp = p.call(token, method.clone(), path, *body).await;
            assert_eq!(
                resp.status, *status,
                "{who}: {method} {path} answered {}",
                resp.text
            );
            if *status == 404 && path.starts_with("/api/tasks/") {
                assert_eq!(resp.body, not_found(&task_a), "{who}: {method} {path}");
            }
        }
    }
    // Hidden and unknown answer alike, for every task route a client or agent may use.
    for path in ["", "/retry", "/cancel"] {
        let method = if path.is_empty() {
            Method::GET
        } else {
            Method::POST
        };
        let hidden = p
            .call(
                &p.client_b,
                method.clone(),
                &format!("/api/tasks/{task_a}{path}"),
                None,
            )
            .await;
        let unknown = p
            .call(
                &p.client_b,
                method.clone(),
                &format!("/api/tasks/{UNKNOWN}{path}"),
                None,
            )
            .await;
        assert_eq!(
            (hidden.status, unknown.status),
            (404, 404),
            "{method} {path}"
        );
        assert_eq!(hidden.body, not_found(&task_a), "{method} {path}");
        assert_eq!(unknown.body, not_found(UNKNOWN), "{method} {path}");
    }
    for (who, token) in p.callers() {
        assert_eq!(events_status(&p.hub, token).await, 200, "{who}: events");
    }
    // Cancel, each on a task of its own: client A its tenant's, agent A never, client B not A's.
    for ((who, token), status) in p.callers().into_iter().zip([200, forbidden, 404, 200]) {
        let task = p
            .submit(&p.client_a, json!({"description": "to cancel"}))
            .await;
        let resp = p
            .call(
                token,
                Method::POST,
                &format!("/api/tasks/{task}/cancel"),
                None,
            )
            .await;
        assert_eq!(resp.status, status, "{who}: cancel answered {}", resp.text);
        let after = p.api().get_task(&task).await;
        let expected = if status == 200 { "cancelled" } else { "queued" };
        assert_eq!(after["status"], expected, "{who}: {after}");
    }
    // B's task was never touched by anyone of A.
    assert_eq!(p.api().get_task(&task_b).await["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_take_the_tenant_of_their_token_and_listings_keep_to_it() {
    let p = Parties::start().await;
    let mut of_a = Vec::new();
    let mut of_b = Vec::new();
    for i in 0..5 {
        of_a.push(
            p.submit(&p.client_a, json!({"description": format!("a{i}")}))
                .await,
        );
        of_b.push(
            p.submit(&p.client_b, json!({"description": format!("b{i}")}))
                .await,
        );
    }
    // Agents submit under their tenant too; the admin token's tenant is `default`.
    of_a.push(
        p.submit(&p.agent_a, json!({"description": "by the agent"}))
            .await,
    );
    let by_admin = p.api().submit(json!({"description": "admin's"})).await;
    assert_eq!(p.api().get_task(&by_admin).await["tenant"], "default");
    let task = p.api().get_task(&of_a[5]).await;
    assert_eq!(
        (&task["tenant"], &task["submitted_by"]),
        (&json!("a"), &json!("w-a"))
    );

    // A body never names the tenant.
    let refused = p
        .call(
            &p.client_a,
            Method::POST,
            "/api/tasks",
            Some(&json!({"description": "x", "tenant": "b"})),
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert!(
        refused.error().starts_with("tenant is not allowed"),
        "{}",
        refused.text
    );

    // Pages of two, full until the last, with only the caller's tenant in them.
    for (token, mine) in [
        (&p.client_a, &of_a),
        (&p.agent_a, &of_a),
        (&p.client_b, &of_b),
    ] {
        let listed = p.list_all(token, "", 2).await;
        assert_eq!(
            ids(&listed),
            mine.iter().map(String::as_str).collect::<Vec<_>>()
        );
        let own_tenant = &listed[0]["tenant"];
        assert!(
            listed.iter().all(|t| &t["tenant"] == own_tenant),
            "{listed:?}"
        );
    }
    // An admin lists one tenant with ?tenant=, or all of them.
    let b_only = p.list_all(p.api().admin_token(), "&tenant=b", 3).await;
    assert_eq!(
        ids(&b_only),
        of_b.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(p.list_all(p.api().admin_token(), "", 100).await.len(), 12);
    // A client may name its own tenant, not another.
    assert_eq!(p.list_all(&p.client_a, "&tenant=a", 4).await.len(), 6);
    let other = p
        .call(&p.client_a, Method::GET, "/api/tasks?tenant=b", None)
        .await;
    assert_eq!(other.status, 403, "{}", other.text);

    // Stats count the caller's tenant; an admin's count everything or ?tenant=.
    let queued = |stats: Value| stats["by_status"]["queued"].as_u64().unwrap();
    let admin = p.api().admin_token();
    assert_eq!(queued(p.stats(&p.client_a, "").await), 6);
    assert_eq!(queued(p.stats(&p.client_b, "").await), 5);
    assert_eq!(queued(p.stats(&p.agent_a, "").await), 6);
    assert_eq!(queued(p.stats(admin, "").await), 12);
    assert_eq!(queued(p.stats(admin, "?tenant=b").await), 5);
    let stats = p.stats(&p.client_b, "").await;
    assert_eq!(stats["by_priority"]["normal"], 5, "{stats}");

    // The command line shows the tenant of each task and token.
    let tokens = p.api().get("/admin/tokens").await.expect(200, "tokens");
    let client_b = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["agent_id"] == "ci-b")
        .expect("ci-b listed");
    assert_eq!(
        (&client_b["role"], &client_b["tenant"]),
        (&json!("client"), &json!("b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_what_it_was_assigned_in_any_tenant_and_nothing_else() {
    let p = Parties::start().await;
    let mut agent = Agent::connect(&p.hub.ws_url(), "w-a", &p.agent_a).await;
    // B's task goes to A's agent: tenants limit what is seen, not who runs what.
    let assigned = p
        .submit(
            &p.client_b,
            json!({"description": "b's work", "max_retries": 1}),
        )
        .await;
    let a = agent.expect_assign().await;
    assert_eq!(a.task_id, assigned);
    let path = format!("/api/tasks/{assigned}");
    let read = p.call(&p.agent_a, Method::GET, &path, None).await;
    assert_eq!(read.expect(200, "the assignee reads it")["tenant"], "b");
    agent.accept(&a).await;
    agent
        .send(json!({"type": "task_failed", "task_id": assigned, "generation": a.generation, "error": "boom"}))
        .await;
    agent.expect_ack(&assigned, "dead_letter").await;
    // No longer assigned, but it was: still readable.
    let read = p.call(&p.agent_a, Method::GET, &path, None).await;
    assert_eq!(
        read.expect(200, "the former assignee reads it")["status"],
        "dead_letter"
    );
    // A task of B that it never held is an unknown id to it.
    let never = p
        .submit(
            &p.client_b,
            json!({"description": "gpu only", "needed_capabilities": ["gpu"]}),
        )
        .await;
    let hidden = p
        .call(
            &p.agent_a,
            Method::GET,
            &format!("/api/tasks/{never}"),
            None,
        )
        .await;
    assert_eq!((hidden.status, hidden.body), (404, not_found(&never)));
    // Listings keep to its tenant, even for what it was assigned.
    assert!(p.list_all(&p.agent_a, "", 10).await.is_empty());
    let of_a = p.dead_letter(&p.agent_a).await;
    assert_eq!(
        (
            of_a["count"].as_u64(),
            of_a["tasks"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let of_b = p.dead_letter(&p.client_b).await;
    assert_eq!(of_b["count"], 1, "{of_b}");
    assert_eq!(of_b["tasks"][0]["id"], assigned.as_str());
    // Retry: not A's client, B's.
    let retry = format!("/api/tasks/{assigned}/retry");
    let refused = p.call(&p.client_a, Method::POST, &retry, None).await;
    assert_eq!((refused.status, refused.body), (404, not_found(&assigned)));
    let retried = p.call(&p.client_b, Method::POST, &retry, None).await;
    assert_eq!(
        retried.expect(200, "B retries its task")["status"],
        "requeued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_name_a_known_role_and_tenant_and_clients_cannot_identify() {
    let p = Parties::start().await;
    let api = p.api();
    let refused = api
        .post("/admin/tokens", &json!({"agent_id": "x", "role": "boss"}))
        .await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(
        refused.error(),
        "role must be one of agent, client or admin, not \"boss\""
    );
    let refused = api
        .post("/admin/tokens", &json!({"agent_id": "x", "tenant": "nope"}))
        .await;
    assert_eq!(
        (refused.status, refused.body),
        (404, json!({"error": "tenant_not_found", "tenant": "nope"}))
    );
    // Defaults: an agent of `default`.
    let made = api
        .post("/admin/tokens", &json!({"agent_id": "plain"}))
        .await
        .expect(201, "a token with defaults");
    assert_eq!(
        (&made["role"], &made["tenant"]),
        (&json!("agent"), &json!("default"))
    );

    // A client's identify is refused with its own code; the connection stays open and an
    // agent token then identifies on it.
    let mut conn = Agent::open(&p.hub.ws_url(), "ci-a", &p.agent_a).await;
    conn.send(json!({"type": "identify", "agent_id": "ci-a", "token": p.client_a}))
        .await;
    conn.expect_error("client_token_cannot_identify").await;
    conn.send(json!({"type": "identify", "agent_id": "w-a", "token": p.agent_a}))
        .await;
    assert_eq!(conn.expect_type("identified").await["agent_id"], "w-a");
    let agents = api.get("/api/agents").await.expect(200, "agents");
    assert!(
        agents["agents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["agent_id"] != "ci-a"),
        "{agents}"
    );
    // Revoking a client's tokens works as for an agent's.
    let revoked = api
        .request(
            Method::DELETE,
            "/admin/tokens/ci-a",
            Some(api.admin_token()),
            None,
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    let after = p.call(&p.client_a, Method::GET, "/api/tasks", None).await;
    assert_eq!(after.status, 401);
}

/// One event stream, read as a test reads it.
struct Stream {
    response: reqwest::Response,
    parser: Parser,
    ready: std::collections::VecDeque<Received>,
}

impl Stream {
    async fn open(hub: &Hub, token: &str) -> Stream {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{}/api/events", hub.addr()))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /api/events");
        assert_eq!(response.status(), 200);
        Stream {
            response,
            parser: Parser::default(),
            ready: Default::default(),
        }
    }

    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(event) = self.ready.pop_front() {
                let data = serde_json::from_str(&event.data).expect("data is JSON");
                return (event.event, data);
            }
            let chunk = tokio::time::timeout(RECV_TIMEOUT, self.response.chunk())
                .await
                .expect("an event within the timeout")
                .expect("the stream reads")
                .expect("the stream goes on");
            self.ready
                .extend(self.parser.feed(&String::from_utf8_lossy(&chunk)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_of_clients_and_agents_keep_to_their_tenant() {
    let p = Parties::start().await;
    let mut of_a = Stream::open(&p.hub, &p.client_a).await;
    let mut all = Stream::open(&p.hub, p.api().admin_token()).await;
    let (kind, hello) = of_a.next().await;
    assert_eq!(kind, "hello");
    assert_eq!(
        (&hello["role"], &hello["tenant"]),
        (&json!("client"), &json!("a"))
    );
    let (_, hello) = all.next().await;
    assert_eq!(hello["role"], "admin");
    assert!(hello.get("tenant").is_none(), "{hello}");

    // An agent connects (an agent event), B submits, then A: A's stream shows only A's task.
    let mut agent = Agent::connect(&p.hub.ws_url(), "w-a", &p.agent_a).await;
    let task_b = p
        .submit(
            &p.client_b,
            json!({"description": "b", "needed_capabilities": ["gpu"]}),
        )
        .await;
    let task_a = p
        .submit(
            &p.client_a,
            json!({"description": "a", "needed_capabilities": ["gpu"]}),
        )
        .await;
    let (kind, event) = of_a.next().await;
    assert_eq!(kind, "task", "{event}");
    assert_eq!(
        (&event["task_id"], &event["tenant"]),
        (&json!(task_a), &json!("a"))
    );
    // The admin's stream has all of it, in order.
    let mut agent_events = 0;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (kind, event) = all.next().await;
        match kind.as_str() {
            "agent" => agent_events += 1,
            "task" => tasks.push((
                str_field(&event, "task_id").to_owned(),
                event["tenant"].clone(),
            )),
            _ => {}
        }
        if tasks.len() == 2 {
            break;
        }
    }
    assert!(agent_events > 0, "the admin sees the agent connect");
    assert_eq!(tasks, [(task_b, json!("b")), (task_a, json!("a"))]);
    agent.close().await;
}
