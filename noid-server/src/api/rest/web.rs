//! The web console's files (`/ui` and `/ui/:file`): a page that lists the caller's VMs and
//! opens their consoles in xterm.js. Everything is built into the binary (xterm.js vendored
//! in `web/vendor`), so there is nothing to build or install. The page itself holds no
//! secret and is public; it asks for a token and uses it in headers only.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};

use super::{ApiError, Gateway};
use crate::core::{CoreError, Thing};

/// Name, content type and bytes of each file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../../web/index.html"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../web/console.css"),
    ),
    (
        "xterm.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/vendor/xterm.js"),
    ),
    (
        "xterm.css",
        "text/css; charset=utf-8",
        include_bytes!("../../../web/vendor/xterm.css"),
    ),
    (
        "addon-fit.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../../web/vendor/addon-fit.js"),
    ),
];

/// Scripts and styles from this server only (none inline), connections back to it only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self' ws: wss:; img-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'none'";

pub(super) fn handler(path: &str) -> MethodRouter<Gateway> {
    if path == "/ui" {
        get(|| async { serve("index.html") })
    } else {
        get(|Path(file): Path<String>| async move { serve(&file) })
    }
}

fn serve(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, ..)| *n == name) else {
        return ApiError::from(CoreError::NotFound(
            Thing::Other,
            format!("no file {name:?} in the web console"),
        ))
        .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        *body,
    )
        .into_response()
}
