//! The built page, as 80 browsers at once will fetch it: `index.html` at `/` (never cached, so
//! a new build is seen at once), the hashed assets Trunk names (cached for good), each served
//! gzipped when the browser accepts it (`./dev page` writes the `.gz` files beside them), and
//! 404 for anything else — not the page under every unknown path.

use std::path::Path;

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use axum::response::Response;
use axum::routing::get_service;
use tower_http::services::{ServeDir, ServeFile};

/// Routes for the page in `dir`, to merge into the proxy's router.
pub fn routes<S: Clone + Send + Sync + 'static>(dir: &Path) -> Router<S> {
    let index = ServeFile::new(dir.join("index.html")).precompressed_gzip();
    let assets = ServeDir::new(dir).precompressed_gzip();
    Router::new()
        .route_service("/", get_service(index))
        .fallback_service(assets)
        .layer(axum::middleware::map_response(cache_headers))
}

/// HTML is checked again on every visit; everything else has a content hash in its name.
async fn cache_headers(mut response: Response) -> Response {
    if response.status().is_success() {
        let html = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|t| t.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
        let policy = if html { "no-cache" } else { "public, max-age=31536000, immutable" };
        response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static(policy));
    }
    response
}
