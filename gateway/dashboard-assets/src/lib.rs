//! The admin dashboard, embedded: every file of the built app with its gzip-compressed copy,
//! content type and cache policy, for the admin listener to serve at `/`.
//!
//! The build script builds `dashboard/` for `wasm32-unknown-unknown` and runs wasm-bindgen, so
//! `cargo build` stays the one command. Files live under `/assets/<fingerprint>/` (cached for a
//! year: a new build has a new fingerprint); `/index.html` is revalidated on every load.

/// One embedded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The URL path it is served at (`/index.html`, `/assets/<fingerprint>/app_bg.wasm`, …).
    pub path: &'static str,
    pub bytes: &'static [u8],
    /// The same bytes, gzip-compressed: send these with `Content-Encoding: gzip` when the client
    /// accepts it.
    pub gzip: &'static [u8],
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

impl Asset {
    /// The body to send for a request's `Accept-Encoding`, and the `Content-Encoding` to send
    /// with it. Responses should also carry `Vary: Accept-Encoding`.
    pub fn negotiate(&self, accept_encoding: Option<&str>) -> (&'static [u8], Option<&'static str>) {
        let gzip_ok = accept_encoding.is_some_and(|a| {
            a.split(',').any(|part| {
                let mut it = part.split(';');
                let coding = it.next().unwrap_or("").trim();
                let refused = it.any(|p| p.trim().replace(' ', "") == "q=0");
                (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
            })
        });
        if gzip_ok && self.gzip.len() < self.bytes.len() { (self.gzip, Some("gzip")) } else { (self.bytes, None) }
    }
}

static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Every embedded file, `/index.html` first.
pub fn assets() -> &'static [Asset] {
    ASSETS
}

/// The page that boots the app.
pub fn index() -> &'static Asset {
    // The build script always writes index.html first.
    &ASSETS[0]
}

/// Paths of the admin listener that are never the dashboard's.
const RESERVED: [&str; 4] = ["/admin/api", "/metrics", "/healthz", "/readyz"];

/// What to serve for a GET of `path` (without the query) on the admin listener: the embedded
/// file, or `index.html` for any other path (the app's own routes, such as `/tenants/acme`,
/// are drawn in the browser). `None` for the API and probe paths, and for unknown files under
/// `/assets/` (a stale fingerprint should be a 404, not a page).
pub fn asset(path: &str) -> Option<&'static Asset> {
    let reserved = |p: &str| path == p || path.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'));
    if RESERVED.iter().any(|p| reserved(p)) {
        return None;
    }
    if let Some(found) = ASSETS.iter().find(|a| a.path == path) {
        return Some(found);
    }
    if path == "/assets" || path.starts_with("/assets/") {
        return None;
    }
    Some(index())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fall_back_to_the_index_but_not_for_the_api_or_assets() {
        let index = index();
        assert_eq!(index.path, "/index.html");
        assert_eq!(index.cache_control, "no-cache");
        assert_eq!(asset("/"), Some(index));
        assert_eq!(asset("/tenants/acme"), Some(index));
        assert_eq!(asset("/admin/api/tenants"), None);
        assert_eq!(asset("/admin/api"), None);
        assert_eq!(asset("/metrics"), None);
        assert_eq!(asset("/healthz"), None);
        assert_eq!(asset("/assets/0000/app.js"), None);
        // `/admin/apiary` is not the API.
        assert_eq!(asset("/admin/apiary"), Some(index));
    }

    #[test]
    fn the_index_points_at_embedded_fingerprinted_files() {
        let html = std::str::from_utf8(index().bytes).unwrap();
        for a in assets().iter().skip(1) {
            assert!(a.path.starts_with("/assets/"), "{}", a.path);
            assert!(a.cache_control.contains("immutable"));
            assert_eq!(asset(a.path), Some(a));
        }
        let js = assets().iter().find(|a| a.path.ends_with("/app.js")).unwrap();
        assert!(html.contains(js.path), "{html}");
        assert_eq!(js.content_type, "text/javascript; charset=utf-8");
        let css = assets().iter().find(|a| a.path.ends_with("/style.css")).unwrap();
        assert!(html.contains(css.path));
    }

    #[test]
    fn gzip_is_sent_only_to_clients_that_take_it() {
        let js = assets().iter().find(|a| a.path.ends_with("/app.js")).unwrap();
        assert_eq!(js.negotiate(Some("gzip, deflate, br")).1, Some("gzip"));
        assert_eq!(js.negotiate(Some("br")).1, None);
        assert_eq!(js.negotiate(Some("gzip;q=0")).1, None);
        assert_eq!(js.negotiate(None), (js.bytes, None));
        let mut decoder = flate2::read::GzDecoder::new(js.gzip);
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut decoder, &mut out).unwrap();
        assert_eq!(out, js.bytes);
    }
}
