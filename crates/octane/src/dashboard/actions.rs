//! The actions: send a signal, wake, cancel. Each is a POST of a form that
//! carries the server's form token, and ends in a redirect to the
//! workflow's page with a notice, or in a page saying what was wrong.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::pages::{parse_id, urlencode};
use super::{App, Problem};
use crate::store::WorkflowId;

type Fields = Form<HashMap<String, String>>;

pub(super) async fn signal(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(form): Fields,
) -> Result<Response, Problem> {
    let id = checked(&app, &id, &form)?;
    let name = form.get("name").map(|n| n.trim()).unwrap_or("");
    if name.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "a signal needs a name",
        ));
    }
    let body = form.get("body").map(String::as_str).unwrap_or("null");
    // Checked here, so a body no workflow could decode is never stored.
    serde_json::from_str::<serde_json::Value>(body).map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            format!("the body of signal `{name}` is not valid JSON: {e}"),
        )
    })?;
    app.engine.signal_json(id, name, body).await?;
    Ok(done(id, &format!("signal `{name}` sent")))
}

pub(super) async fn wake(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(form): Fields,
) -> Result<Response, Problem> {
    let id = checked(&app, &id, &form)?;
    app.engine.wake(id).await?;
    Ok(done(id, "woken: it is runnable now"))
}

pub(super) async fn cancel(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(form): Fields,
) -> Result<Response, Problem> {
    let id = checked(&app, &id, &form)?;
    app.engine.cancel(id).await?;
    Ok(done(id, "cancelled"))
}

/// The workflow id of an action whose form carries this server's token.
fn checked(app: &App, id: &str, form: &HashMap<String, String>) -> Result<WorkflowId, Problem> {
    if form.get("form_token") != Some(&app.form_token) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "refused: the form does not come from this dashboard (reload the page and try again)",
        ));
    }
    parse_id(id)
}

fn done(id: WorkflowId, notice: &str) -> Response {
    Redirect::to(&format!("/workflows/{id}?notice={}", urlencode(notice))).into_response()
}
