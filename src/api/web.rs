//! The web page: plain HTML, CSS and JavaScript from `assets/web/`, embedded in the binary
//! with rust-embed (no CDN, no build step). `/` is the page, `/ui/FILE` its other files.
//!
//! Caching: `/` is always revalidated (`no-cache`), so a new drover's page is picked up at
//! once. It names its script and style sheet with their content hash (`/ui/app.js?v=HASH`,
//! rewritten once at start-up), and a file asked for with its current hash is answered
//! `immutable` for a year: a reload then costs one request for the HTML instead of three
//! (part of what keeps the page under 100 ms). A stale or missing `v` gets `no-cache`.
//!
//! These files are public (they are the same in every drover and hold no data); everything
//! the page shows comes from the authenticated API. Answers forbid framing and inline or
//! foreign scripts (Content-Security-Policy), so the page cannot be clickjacked or made to
//! run someone else's code.

use axum::extract::{Path, RawQuery};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;
use std::sync::OnceLock;

#[derive(RustEmbed)]
#[folder = "assets/web/"]
struct Assets;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The files `index.html` names with their hash.
const VERSIONED: [&str; 2] = ["app.js", "style.css"];
/// How long a browser may keep a file asked for with its current hash.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn router() -> Router {
    Router::new().route("/", get(|| async { index() })).route(
        "/ui/{*file}",
        get(|Path(f): Path<String>, RawQuery(q): RawQuery| async move {
            let current = q
                .as_deref()
                .and_then(|q| q.strip_prefix("v="))
                .is_some_and(|v| version(&f).is_some_and(|h| h == v));
            file(&f, current)
        }),
    )
}

/// The first 16 hex digits of `name`'s SHA-256, for the versioned files.
fn version(name: &str) -> Option<String> {
    if !VERSIONED.contains(&name) {
        return None;
    }
    let hash = Assets::get(name)?.metadata.sha256_hash();
    Some(hash[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// `index.html` with `/ui/FILE` of the versioned files turned into `/ui/FILE?v=HASH`.
fn index_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        let raw = Assets::get("index.html").map(|a| a.data.into_owned());
        let mut html = String::from_utf8_lossy(&raw.unwrap_or_default()).into_owned();
        for f in VERSIONED {
            if let Some(v) = version(f) {
                html = html.replace(&format!("\"/ui/{f}\""), &format!("\"/ui/{f}?v={v}\""));
            }
        }
        html
    })
}

fn index() -> Response {
    respond("index.html", index_html().as_bytes().to_vec(), false)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn file(name: &str, current: bool) -> Response {
    let Some(asset) = Assets::get(name) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    respond(name, asset.data.into_owned(), current)
}

/// `body` as `name`, with the page's security headers; `immutable` when asked for by its
/// current hash.
fn respond(name: &str, body: Vec<u8>, immutable: bool) -> Response {
    let cache = if immutable { IMMUTABLE } else { "no-cache" };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(name)),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_files_are_embedded() {
        for f in ["index.html", "app.js", "style.css"] {
            assert!(Assets::get(f).is_some(), "assets/web/{f} is not embedded");
        }
        let index = String::from_utf8(Assets::get("index.html").unwrap().data.to_vec()).unwrap();
        assert!(
            !index.contains("http://") && !index.contains("https://"),
            "no CDN"
        );
    }

    #[test]
    fn the_page_names_its_files_by_hash() {
        let html = index_html();
        for f in VERSIONED {
            let v = version(f).unwrap();
            assert_eq!(v.len(), 16);
            assert!(
                html.contains(&format!("\"/ui/{f}?v={v}\"")),
                "index.html does not name {f} by its hash"
            );
        }
        assert_eq!(version("index.html"), None);
        let cache = |r: &Response| {
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(cache(&file("app.js", true)), IMMUTABLE);
        assert_eq!(cache(&file("app.js", false)), "no-cache");
        assert_eq!(cache(&index()), "no-cache");
    }
}
