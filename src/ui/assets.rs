//! The UI's static files, compiled into the binary: our `app.js`/`app.css` and the vendored
//! libraries. URLs carry a content hash (`?v=`), so they are cached for a year and change on upgrade.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "vendor/htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/htmx.min.js"),
    ),
    (
        "vendor/wavesurfer.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/wavesurfer.min.js"),
    ),
    (
        "vendor/wavesurfer.regions.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/wavesurfer.regions.min.js"),
    ),
    (
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/vendor/uPlot.min.css"),
    ),
];

/// FNV-1a over every file: changes whenever any asset does.
fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (_, _, bytes) in FILES {
            for b in *bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        format!("{:012x}", h & 0xffff_ffff_ffff)
    })
}

/// The URL of an asset, for templates: `{{ asset("app.js") }}`.
pub fn url(name: &str) -> String {
    format!("/ui/assets/{name}?v={}", version())
}

/// Total bytes of JavaScript the UI can load (the budget is 300 KB).
pub fn js_bytes() -> usize {
    FILES
        .iter()
        .filter(|(n, _, _)| n.ends_with(".js"))
        .map(|(_, _, b)| b.len())
        .sum()
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == file) {
        Some((_, ctype, bytes)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                ),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ui_ships_under_300_kb_of_javascript() {
        let total = super::js_bytes();
        assert!(total < 300 * 1024, "{total} bytes of JS");
    }
}
