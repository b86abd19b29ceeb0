//! The dashboard's routes over plain HTTP: its files are served from the binary to anyone, and
//! `GET /api/policy/builtins` lists what a swap may name (what the page's swap form offers).
//! The page itself is tested in a browser (browser.rs).

use reqwest::Method;
use serde_json::Value;

use crate::harness::{Hub, HubOpts};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

#[tokio::test]
async fn the_dashboard_files_are_served_to_anyone_and_nothing_else_under_it() {
    let hub = Hub::start(HubOpts::default()).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for (file, content_type) in [
        ("", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/api.js", "text/javascript; charset=utf-8"),
        ("/charts.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
    ] {
        let response = client
            .get(format!("http://{}/dashboard{file}", hub.addr()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "/dashboard{file}");
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "/dashboard{file}"
        );
        assert!(
            !response.text().await.unwrap().is_empty(),
            "/dashboard{file}"
        );
    }
    for missing in ["/nope.js", "/..%2Fmod.rs", "/app.js/more"] {
        let response = hub
            .api()
            .request(Method::GET, &format!("/dashboard{missing}"), None, None)
            .await;
        assert_eq!(
            response.status, 404,
            "/dashboard{missing}: {}",
            response.text
        );
        assert_eq!(response.error(), "not_found");
    }
}

#[tokio::test]
async fn the_builtin_policies_are_listed_to_any_token_as_the_cli_lists_them() {
    let hub = Hub::start(HubOpts::default()).await;
    let anonymous = hub
        .api()
        .request(Method::GET, "/api/policy/builtins", None, None)
        .await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);

    let token = hub.api().create_token("reader").await;
    let answer = hub
        .api()
        .request(Method::GET, "/api/policy/builtins", Some(&token), None)
        .await
        .expect(200, "GET /api/policy/builtins as an agent");
    let listed: Vec<&str> = answer["builtins"]
        .as_array()
        .expect("a list of names")
        .iter()
        .map(|name| name.as_str().expect("a name"))
        .collect();
    let cli = std::process::Command::new(BIN)
        .arg("policies")
        .output()
        .expect("run switchyard policies");
    let expected: Vec<String> = String::from_utf8(cli.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(listed.contains(&"greedy"), "{answer}");
    assert_eq!(listed, expected);

    // Each name is one a swap accepts.
    for name in &listed {
        let status: Value = hub
            .api()
            .put_policy(&serde_json::json!({"builtin": name}))
            .await
            .expect(200, &format!("swap to builtin:{name}"));
        assert_eq!(status["source"], format!("builtin:{name}"));
    }
}
