//! The web dashboard: a page and its scripts and style, embedded in the binary (no build step,
//! nothing fetched from elsewhere). `GET /dashboard` is the page; `GET /dashboard/<file>` its
//! assets. The page holds no data of its own: it reads the HTTP API and the event stream with
//! the token the user types (docs/dashboard.md).

use super::reply::{ApiError, ApiResult};
use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use warp::http::{HeaderValue, StatusCode};
use warp::Reply;

/// Every file of the dashboard: its name under `/dashboard/`, its content type, its text.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("dashboard/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("dashboard/style.css"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/api.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/charts.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("dashboard/app.js"),
    ),
];

/// `GET /dashboard`: the page.
pub async fn page() -> ApiResult {
    asset("index.html").await
}

/// `GET /dashboard/<name>`: one of the page's files; 404 for any other name.
pub async fn asset(name: &str) -> ApiResult {
    let (_, content_type, text) = ASSETS
        .iter()
        .find(|(file, _, _)| *file == name)
        .ok_or_else(ApiError::not_found)?;
    let mut response = warp::reply::with_status(*text, StatusCode::OK).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change only with the binary; a page open across an upgrade reloads them.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn assets_are_served_with_their_types_and_others_are_not_found() {
        let css = asset("style.css").await.unwrap();
        assert_eq!(css.headers()[CONTENT_TYPE], "text/css; charset=utf-8");
        let page = page().await.unwrap();
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(asset("../mod.rs").await.is_err());
        assert!(asset("nope.js").await.is_err());
    }

    #[test]
    fn the_page_loads_every_script_it_needs_and_nothing_from_elsewhere() {
        let (_, _, page) = ASSETS[0];
        for (name, _, text) in ASSETS {
            if name.ends_with(".js") {
                assert!(
                    page.contains(&format!("/dashboard/{name}")),
                    "{name} not loaded"
                );
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name} links out"
            );
        }
    }
}
