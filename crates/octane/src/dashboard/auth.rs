//! Who may use the dashboard: the token, when one is set, on every
//! request; and no state-changing request from another site.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::{App, Problem};

/// The cookie a `?token=` visit sets, so that links and forms need not
/// carry the token.
const COOKIE: &str = "octane_dashboard_token";

/// Checks the token (when the server has one) and refuses cross-site
/// POSTs, before any handler runs.
pub(super) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token {
        if let Some(given) = query_token(request.uri().query()) {
            if !same(&given, token) {
                return unauthorized();
            }
            // Trade the token in the address for a cookie, and drop it from
            // the address (and the browser's history).
            let path = request.uri().path().to_string();
            let mut response = Redirect::to(&path).into_response();
            let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            return response;
        }
        let presented = bearer(request.headers()).or_else(|| cookie(request.headers()));
        if !presented.is_some_and(|p| same(&p, token)) {
            return unauthorized();
        }
    }
    if request.method() == Method::POST && from_another_site(request.headers()) {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "refused: this request comes from another site",
        )
        .into_response();
    }
    next.run(request).await
}

fn unauthorized() -> Response {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "this dashboard needs its token: open it as /?token=TOKEN, or send \
         `Authorization: Bearer TOKEN`",
    )
    .into_response()
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_string())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_string)
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// What the browser says of a request's origin: `Sec-Fetch-Site`, or an
/// `Origin` whose host is not the one the request was sent to.
fn from_another_site(headers: &HeaderMap) -> bool {
    let value = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if value(header::HeaderName::from_static("sec-fetch-site"))
        .is_some_and(|site| site != "same-origin" && site != "none")
    {
        return true;
    }
    match (value(header::ORIGIN), value(header::HOST)) {
        (Some(origin), Some(host)) => origin.split_once("://").map(|(_, h)| h) != Some(host),
        // Browsers send `Origin` with every form POST; tools (curl) that
        // send none and carry the form token are no other site's page.
        (Some(_), None) => true,
        (None, _) => false,
    }
}
