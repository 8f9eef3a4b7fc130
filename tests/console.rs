//! The web console as a server serves it: its files under `/console/`
//! with a strict Content-Security-Policy and no inline script, nothing
//! from another origin, and none of it with `--no-console`.

mod support;

use reqwest::StatusCode;
use support::{Options, Server};

async fn get(server: &Server, path: &str) -> reqwest::Response {
    server
        .client
        .get(format!("{}{path}", server.url))
        .send()
        .await
        .expect("request")
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy() {
    let server = Server::start();
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            header(&response, "content-type").starts_with(kind),
            "{path}"
        );
        let policy = header(&response, "content-security-policy").to_owned();
        for rule in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(policy.contains(rule), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"));
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        let body = response.text().await.expect("body");
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{path} loads nothing from elsewhere"
        );
    }
    // No key is needed for the console's own files; the API still wants one.
    let response = get(&server, "/v1/buckets").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = server
        .client
        .get(format!("{}/console", server.url))
        .send()
        .await
        .expect("request");
    assert_eq!(response.url().path(), "/console/", "redirected");
}

#[tokio::test]
async fn no_console_serves_none_of_it() {
    let server = Server::start_with(Options {
        args: vec!["--no-console".into()],
        ..Options::default()
    });
    let response = get(&server, "/console/").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(header(&response, "content-type").starts_with("application/problem+json"));
}
