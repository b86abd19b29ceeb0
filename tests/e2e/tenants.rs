//! Tenants as hub data (`/admin/tenants`, `switchyard tenant`) and their quotas: `max_queued`
//! and `submit_rate` refuse with 429 and store nothing of what they refuse, a batch passes whole
//! or not at all, and the counts are right after a restart.
//!
//! Every task is its tenant's `default` until tokens carry a tenant, so the quotas are tested
//! on `default`.

use std::process::{Command, Output};

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{poll_until, str_field, u64_field, Hub, HubOpts, STATE_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn tenant<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tenant {name} in {list}"))
}

async fn tenants(hub: &Hub) -> Value {
    hub.api()
        .get("/admin/tenants")
        .await
        .expect(200, "GET /admin/tenants")
}

async fn patch(hub: &Hub, name: &str, body: Value) -> crate::harness::api::Resp {
    let api = hub.api();
    api.request(
        Method::PATCH,
        &format!("/admin/tenants/{name}"),
        Some(api.admin_token()),
        Some(&body),
    )
    .await
}

async fn delete(hub: &Hub, name: &str) -> crate::harness::api::Resp {
    let api = hub.api();
    api.request(
        Method::DELETE,
        &format!("/admin/tenants/{name}"),
        Some(api.admin_token()),
        None,
    )
    .await
}

fn queued_total(stats: &Value) -> u64 {
    stats["by_status"]["queued"].as_u64().unwrap_or(0)
}

/// Posts `tasks` as a batch; returns the status, the body and the `Retry-After` header.
async fn post_batch(hub: &Hub, n: usize) -> (u16, Value, Option<String>) {
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"description": format!("task {i}")}))
        .collect();
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!("http://{}/api/tasks/batch", hub.addr()))
        .bearer_auth(hub.api().admin_token())
        .json(&json!({ "tasks": tasks }))
        .send()
        .await
        .expect("POST /api/tasks/batch");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_listed_changed_and_deleted() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();

    let list = tenants(&hub).await;
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1, "{list}");
    let default = tenant(&list, "default");
    assert_eq!(default["weight"], 1.0);
    assert_eq!(
        (&default["queued"], &default["assigned"]),
        (&json!(0), &json!(0))
    );

    let created = api
        .post(
            "/admin/tenants",
            &json!({"name": "team-a", "weight": 3, "max_queued": 10}),
        )
        .await
        .expect(201, "create team-a");
    assert_eq!(str_field(&created, "name"), "team-a");
    assert_eq!(created["weight"], 3.0);
    assert_eq!(created["max_queued"], 10);
    assert_eq!(created["submit_rate"], Value::Null);

    let again = api.post("/admin/tenants", &json!({"name": "team-a"})).await;
    assert_eq!(again.status, 409, "{}", again.text);
    assert_eq!(again.error(), "tenant_exists");

    // A change of weight is visible at once.
    let changed = patch(&hub, "team-a", json!({"weight": 2.5, "max_queued": null}))
        .await
        .expect(200, "patch team-a");
    assert_eq!(changed["weight"], 2.5);
    assert_eq!(changed["max_queued"], Value::Null);
    let listed = tenants(&hub).await;
    assert_eq!(tenant(&listed, "team-a")["weight"], 2.5);
    assert_eq!(tenant(&listed, "team-a")["share"], 0.0);

    let unknown = patch(&hub, "nobody", json!({"weight": 2})).await;
    assert_eq!((unknown.status, unknown.error()), (404, "tenant_not_found"));
    let unknown = delete(&hub, "nobody").await;
    assert_eq!((unknown.status, unknown.error()), (404, "tenant_not_found"));

    let refused = delete(&hub, "default").await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.error(), "tenant_in_use");
    assert!(
        str_field(&refused.body, "detail").contains("default tenant always exists"),
        "{}",
        refused.text
    );

    delete(&hub, "team-a").await.expect(200, "delete team-a");
    assert_eq!(delete(&hub, "team-a").await.status, 404);
    let names: Vec<String> = tenants(&hub).await["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| str_field(t, "name").to_owned())
        .collect();
    assert_eq!(names, ["default"]);

    let audit = api.get("/admin/audit").await.expect(200, "audit");
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_field(r, "action"))
        .collect();
    assert_eq!(
        actions,
        ["tenant_delete", "tenant_update", "tenant_create"],
        "newest first; refusals are not recorded"
    );

    // Tenants are kept: a restart finds what was made.
    api.post("/admin/tenants", &json!({"name": "kept", "submit_rate": 4}))
        .await
        .expect(201, "create kept");
    let hub = Hub::restart_on(hub.kill9()).await;
    assert_eq!(tenant(&tenants(&hub).await, "kept")["submit_rate"], 4.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tenant_bodies_are_refused_naming_the_field() {
    let hub = Hub::start(HubOpts::default()).await;
    let api = hub.api();
    let cases = [
        (json!({}), "name"),
        (json!({"name": "Team A"}), "name"),
        (json!({"name": "a".repeat(65)}), "name"),
        (json!({"name": "t", "weight": 0}), "weight"),
        (json!({"name": "t", "weight": 1001}), "weight"),
        (json!({"name": "t", "weight": "heavy"}), "weight"),
        (json!({"name": "t", "max_queued": -1}), "max_queued"),
        (json!({"name": "t", "max_queued": 1.5}), "max_queued"),
        (json!({"name": "t", "submit_rate": 0}), "submit_rate"),
        (json!({"name": "t", "submit_rate": "fast"}), "submit_rate"),
    ];
    for (body, field) in cases {
        let refused = api.post("/admin/tenants", &body).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert!(refused.error().contains(field), "{body}: {}", refused.text);
    }
    let patches = [
        (json!({}), "nothing to change"),
        (json!({"colour": "red"}), "colour"),
        (json!({"weight": null}), "weight"),
        (json!({"submit_rate": -2}), "submit_rate"),
    ];
    for (body, words) in patches {
        let refused = patch(&hub, "default", body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        assert!(refused.error().contains(words), "{body}: {}", refused.text);
    }
    // Nothing was made or changed.
    let list = tenants(&hub).await;
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(tenant(&list, "default")["submit_rate"], Value::Null);
}

/// `max_queued`: a submission past it is a 429 naming the limit and the count, and nothing of
/// it is stored; a batch passes whole or not at all; the counts are rebuilt after a restart;
/// an assignment makes room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_queued_refuses_past_the_limit_and_survives_a_restart() {
    let hub = Hub::start(HubOpts::default()).await;
    patch(&hub, "default", json!({"max_queued": 5}))
        .await
        .expect(200, "set max_queued");

    let (status, _, _) = post_batch(&hub, 3).await;
    assert_eq!(status, 201);
    let (status, body, retry_after) = post_batch(&hub, 3).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        (
            &body["error"],
            &body["tenant"],
            &body["limit"],
            &body["max"],
            &body["current"]
        ),
        (
            &json!("quota_exceeded"),
            &json!("default"),
            &json!("max_queued"),
            &json!(5),
            &json!(3)
        ),
        "{body}"
    );
    assert_eq!(retry_after, None, "a queue limit does not pass by itself");
    assert_eq!(
        queued_total(&hub.api().task_stats().await),
        3,
        "all or nothing"
    );
    let (status, _, _) = post_batch(&hub, 2).await;
    assert_eq!(status, 201, "exactly up to the limit");
    let refused = hub
        .api()
        .post("/api/tasks", &json!({"description": "one too many"}))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.text);
    assert_eq!(refused.body["current"], 5);
    assert_eq!(queued_total(&hub.api().task_stats().await), 5);
    assert_eq!(tenant(&tenants(&hub).await, "default")["queued"], 5);

    let metrics = hub.api().get("/metrics").await.text;
    for line in [
        "switchyard_quota_refusals_total{tenant=\"default\",limit=\"max_queued\"} 2.0",
        "switchyard_tenant_queued{tenant=\"default\"} 5.0",
        "switchyard_tenant_assigned{tenant=\"default\"} 0.0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }

    let hub = Hub::restart_on(hub.kill9()).await;
    let listed = tenants(&hub).await;
    assert_eq!(tenant(&listed, "default")["queued"], 5, "{listed}");
    assert_eq!(tenant(&listed, "default")["max_queued"], 5, "{listed}");
    let refused = hub
        .api()
        .post("/api/tasks", &json!({"description": "still too many"}))
        .await;
    assert_eq!((refused.status, &refused.body["current"]), (429, &json!(5)));

    // An agent takes one: one queued less, so one more may be submitted.
    let mut agent = hub.agent("a1").await;
    agent.expect_assign().await;
    let counts = poll_until("one task assigned", STATE_TIMEOUT, || async {
        let listed = tenants(&hub).await;
        let default = tenant(&listed, "default").clone();
        match u64_field(&default, "assigned") {
            1 => Ok(default),
            _ => Err(default.to_string()),
        }
    })
    .await;
    assert_eq!(
        (counts["queued"].as_u64(), counts["share"].as_f64()),
        (Some(4), Some(1.0))
    );
    hub.api()
        .post("/api/tasks", &json!({"description": "room again"}))
        .await
        .expect(201, "submit after an assignment");
    let refused = hub
        .api()
        .post("/api/tasks", &json!({"description": "full again"}))
        .await;
    assert_eq!(refused.status, 429, "{}", refused.text);
}

/// `submit_rate`: one second's worth passes at once; past it a 429 `rate_limited` with
/// `Retry-After`; a batch is charged whole or not at all; the bucket refills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_rate_refuses_with_retry_after_and_refills() {
    let hub = Hub::start(HubOpts::default()).await;
    patch(&hub, "default", json!({"submit_rate": 2}))
        .await
        .expect(200, "set submit_rate");

    // Beyond the burst: refused even with the bucket full, and it says so.
    let (status, body, retry_after) = post_batch(&hub, 3).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    assert!(str_field(&body, "detail").contains("split it"), "{body}");
    assert!(retry_after.is_some());

    let (status, body, _) = post_batch(&hub, 2).await;
    assert_eq!(status, 201, "{body}");
    let (status, body, retry_after) = post_batch(&hub, 1).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        (
            &body["error"],
            &body["tenant"],
            &body["limit"],
            &body["max"]
        ),
        (
            &json!("rate_limited"),
            &json!("default"),
            &json!("submit_rate"),
            &json!(2.0)
        ),
        "{body}"
    );
    let seconds: u64 = retry_after
        .expect("Retry-After on a rate limit")
        .parse()
        .expect("whole seconds");
    assert!(seconds >= 1, "{seconds}");
    assert_eq!(u64_field(&body, "retry_after_secs"), seconds);
    assert_eq!(queued_total(&hub.api().task_stats().await), 2);

    // The bucket refills at 2 a second: a later submission passes.
    poll_until("the bucket to refill", STATE_TIMEOUT, || async {
        match post_batch(&hub, 1).await {
            (201, _, _) => Ok(()),
            (status, body, _) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(queued_total(&hub.api().task_stats().await), 3);
    let metrics = hub.api().get("/metrics").await.text;
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "switchyard_quota_refusals_total{tenant=\"default\",limit=\"submit_rate\"} "
        )),
        "{metrics}"
    );

    // Lifting the quota lets anything through.
    patch(&hub, "default", json!({"submit_rate": null}))
        .await
        .expect(200, "lift submit_rate");
    let (status, body, _) = post_batch(&hub, 20).await;
    assert_eq!(status, 201, "{body}");
}

fn run(hub: &Hub, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_HUB", format!("http://{}", hub.addr()))
        .env("SWITCHYARD_TOKEN", hub.api().admin_token())
        .output()
        .expect("run switchyard")
}

fn stdout(hub: &Hub, args: &[&str]) -> String {
    let out = run(hub, args);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "switchyard {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_commands_manage_tenants() {
    let hub = Hub::start(HubOpts::default()).await;
    let created: Value = serde_json::from_str(&stdout(
        &hub,
        &[
            "tenant",
            "create",
            "team-a",
            "--weight",
            "3",
            "--max-queued",
            "10",
            "--submit-rate",
            "5",
        ],
    ))
    .expect("json");
    assert_eq!(
        (
            &created["weight"],
            &created["max_queued"],
            &created["submit_rate"]
        ),
        (&json!(3.0), &json!(10), &json!(5.0))
    );

    let table = stdout(&hub, &["tenant", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TENANT"), "{table}");
    let row = lines
        .iter()
        .find(|l| l.starts_with("team-a"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        ["team-a", "3.0", "10", "5.0", "0", "0", "0.0%"],
        "{table}"
    );

    stdout(
        &hub,
        &[
            "tenant",
            "update",
            "team-a",
            "--max-queued",
            "none",
            "--weight",
            "2",
        ],
    );
    let listed: Value = serde_json::from_str(&stdout(&hub, &["tenant", "list", "--json"])).unwrap();
    let team = tenant(&listed, "team-a");
    assert_eq!(
        (&team["weight"], &team["max_queued"]),
        (&json!(2.0), &Value::Null)
    );
    assert_eq!(team["submit_rate"], 5.0, "left as it was");

    assert_eq!(
        run(&hub, &["tenant", "update", "team-a"]).status.code(),
        Some(2)
    );
    assert_eq!(
        run(
            &hub,
            &["tenant", "update", "team-a", "--max-queued", "lots"]
        )
        .status
        .code(),
        Some(2)
    );
    let refused = run(&hub, &["tenant", "delete", "default"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("409"),
        "{refused:?}"
    );
    stdout(&hub, &["tenant", "delete", "team-a"]);
    assert_eq!(
        run(&hub, &["tenant", "delete", "team-a"]).status.code(),
        Some(1)
    );
}
