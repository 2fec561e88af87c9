//! The web dashboard (feature `dashboard`): workflows by name and state,
//! lists, each workflow's history tree, loops, pending signals and
//! children, and the actions an operator takes — signal, wake, cancel.
//!
//! Pages are rendered on the server; a few lines of plain JavaScript
//! refresh the live part of a page and ask before an action. The server
//! binds the loopback interface unless a token is given, and then checks
//! the token on every request; state-changing requests are POSTs that carry
//! a per-server form token and are refused when the browser says they come
//! from another site.

mod actions;
mod auth;
mod pages;
mod render;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::error::Error;

/// How often the server samples the database for the overview's rates.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The window the overview's per-minute rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(300);

/// Configures and starts the dashboard; from [`Engine::dashboard`].
#[must_use = "the dashboard is served by `.serve(addr).await`"]
pub struct DashboardBuilder<'e> {
    engine: &'e Engine,
    token: Option<String>,
}

impl std::fmt::Debug for DashboardBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardBuilder")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl DashboardBuilder<'_> {
    /// Requires this token on every request: as `Authorization: Bearer
    /// TOKEN`, or once as `?token=TOKEN` in the address (which sets a
    /// cookie). Needed to bind anything but a loopback address.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|t| !t.is_empty());
        self
    }

    /// Binds `addr` (port 0 picks a free one) and serves the dashboard on
    /// the current Tokio runtime until the returned [`Dashboard`] is
    /// stopped or dropped.
    ///
    /// # Errors
    /// [`Error::Dashboard`] when `addr` is not loopback and no token was
    /// given, or when it cannot be bound.
    pub async fn serve(self, addr: SocketAddr) -> Result<Dashboard, Error> {
        if !addr.ip().is_loopback() && self.token.is_none() {
            return Err(Error::Dashboard {
                addr,
                message: "serving beyond the loopback interface needs a token \
                          (--token or OCTANE_DASHBOARD_TOKEN)"
                    .into(),
            });
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::Dashboard {
                addr,
                message: e.to_string(),
            })?;
        let bound = listener.local_addr().map_err(|e| Error::Dashboard {
            addr,
            message: e.to_string(),
        })?;
        let app = Arc::new(App {
            engine: self.engine.clone(),
            token: self.token,
            form_token: uuid::Uuid::new_v4().simple().to_string(),
            samples: Mutex::default(),
        });
        let router = router(app.clone());
        let sampler = tokio::spawn(sample(app));
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(error = %e, "the dashboard stopped serving");
            }
        });
        Ok(Dashboard {
            addr: bound,
            tasks: vec![server, sampler],
        })
    }
}

impl Engine {
    /// A dashboard for this engine's database; see [`DashboardBuilder`].
    pub fn dashboard(&self) -> DashboardBuilder<'_> {
        DashboardBuilder {
            engine: self,
            token: None,
        }
    }

    /// Serves the dashboard at `addr` (loopback, no token) beside this
    /// engine's workers: `engine.serve_dashboard("127.0.0.1:8233".parse()?)`.
    ///
    /// # Errors
    /// As [`DashboardBuilder::serve`].
    pub async fn serve_dashboard(&self, addr: SocketAddr) -> Result<Dashboard, Error> {
        self.dashboard().serve(addr).await
    }
}

/// A running dashboard. Dropping it stops the server.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Dashboard {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What every request handler shares.
struct App {
    engine: Engine,
    token: Option<String>,
    /// Put in every form and required back: a page from another site
    /// cannot know it.
    form_token: String,
    /// `(when, completed workflows, checkpointed loop iterations)`, oldest
    /// first, for the overview's rates.
    samples: Mutex<VecDeque<Sample>>,
}

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    completed: u64,
    iterations: u64,
}

impl App {
    /// Records a sample and returns the per-minute rates of completions
    /// and loop iterations since the oldest sample in the window, once
    /// some time has passed.
    fn rates(&self, now: Sample) -> Option<(f64, f64)> {
        let mut samples = self.samples.lock().expect("samples lock");
        while samples
            .front()
            .is_some_and(|s| now.at.duration_since(s.at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
        samples.push_back(now);
        let first = *samples.front()?;
        let minutes = now.at.duration_since(first.at).as_secs_f64() / 60.0;
        (minutes >= 1.0 / 12.0).then(|| {
            (
                now.completed.saturating_sub(first.completed) as f64 / minutes,
                now.iterations.saturating_sub(first.iterations) as f64 / minutes,
            )
        })
    }
}

/// Samples the database every [`SAMPLE_EVERY`], so rates are ready when
/// the overview is opened.
async fn sample(app: Arc<App>) {
    loop {
        if let Ok(census) = app.engine.census().await {
            app.rates(render::sample_of(&census));
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::overview))
        .route("/workflows", get(pages::list))
        .route("/workflows/{id}", get(pages::workflow))
        .route("/workflows/{id}/signal", post(actions::signal))
        .route("/workflows/{id}/wake", post(actions::wake))
        .route("/workflows/{id}/cancel", post(actions::cancel))
        .route("/assets/dashboard.js", get(script))
        .route("/assets/dashboard.css", get(style))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::guard,
        ))
        .with_state(app)
}

async fn script() -> Response {
    (
        [("content-type", "text/javascript; charset=utf-8")],
        include_str!("assets/dashboard.js"),
    )
        .into_response()
}

async fn style() -> Response {
    (
        [("content-type", "text/css; charset=utf-8")],
        include_str!("assets/dashboard.css"),
    )
        .into_response()
}

async fn not_found() -> Response {
    Problem::new(StatusCode::NOT_FOUND, "no such page").into_response()
}

/// A request that cannot be served, as a page saying why.
struct Problem {
    status: StatusCode,
    message: String,
}

impl Problem {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Problem {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::WorkflowNotFound { .. } => StatusCode::NOT_FOUND,
            Error::InvalidState { .. } | Error::SignalRejected { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Problem::new(status, e.to_string())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        let body = render::layout(
            &title,
            maud::html! {
                h1 { (title) }
                p.problem data-testid="problem" { (self.message) }
                p { a href="/" { "Back to the overview" } }
            },
            false,
        );
        (self.status, Html(body.into_string())).into_response()
    }
}
