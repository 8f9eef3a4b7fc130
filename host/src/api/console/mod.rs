//! The web console at `/console/`: a page, a script and a style sheet
//! served from the binary, which call the JSON API from the browser.
//!
//! The API key stays in the tab's session storage and goes out in the
//! `Authorization` header only (never in a URL or a cookie), so a request
//! forged from another site carries no key: CSRF is impossible by
//! construction. A strict Content-Security-Policy allows this origin's
//! script and style alone (no inline script, no `eval`, no other origin);
//! the script builds every page with `textContent` and DOM nodes, never
//! with HTML strings, so names, metadata and plugin messages show as text.
//! Everything works offline: nothing is loaded from elsewhere.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

/// What the console's responses allow: this origin's script, style and
/// API calls, images of objects read as blobs, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/console.js");
const STYLE: &str = include_str!("assets/console.css");
const ICON: &str = include_str!("assets/favicon.svg");

/// Routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/console/favicon.svg",
            get(|| async { asset(ICON, "image/svg+xml") }),
        )
}

/// One of the console's files, with the headers every one of them carries.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = INDEX.to_ascii_lowercase();
        assert!(!page.contains("<script>"), "inline script");
        let handler = page.match_indices(" on").any(|(i, _)| {
            page[i + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .count()
                > 0
                && page[i + 3..]
                    .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                    .starts_with('=')
        });
        assert!(!handler, "inline event handler attribute");
        assert!(!page.contains("<style"), "inline style");
        assert!(!page.contains("style="), "inline style attribute");
        assert!(page.contains(r#"<script type="module" src="/console/console.js">"#));
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "other origins"
        );
        assert!(!SCRIPT.contains("innerHTML") && !SCRIPT.contains("outerHTML"));
        assert!(!SCRIPT.contains("insertAdjacentHTML") && !SCRIPT.contains("eval("));
        assert!(
            !SCRIPT.contains("localStorage"),
            "the key stays in session storage"
        );
    }
}
