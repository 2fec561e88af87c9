//! Octane: durable workflows for Rust.
//!
//! A workflow is an async function whose every step — an activity, a
//! sleep, a loop iteration — is recorded in a database. When the process
//! dies, or the workflow sleeps and leaves memory, it is later *replayed*:
//! the function runs again from the top, recorded steps return their
//! recorded results instead of running again, and the function carries on
//! live from the first step with no record.
//!
//! Start with [`prelude`], [`Workflow`], [`Activity`] and [`Engine`]; the
//! loop that runs for ever is [`WorkflowCtx::repeat`] (see [`loops`]).
//!
//! ```no_run
//! use octane::prelude::*;
//!
//! #[derive(Serialize, Deserialize)]
//! struct AddOne { value: u64 }
//!
//! impl Activity for AddOne {                 // side effects live in activities
//!     const NAME: &'static str = "add_one";
//!     type Output = u64;
//!     async fn run(&self, _ctx: &ActivityCtx) -> Result<u64> { Ok(self.value + 1) }
//! }
//!
//! struct Counter;                            // workflows orchestrate, deterministically
//! impl Workflow for Counter {
//!     const NAME: &'static str = "counter";
//!     type Input = u64;
//!     type Output = u64;
//!     async fn run(ctx: &mut WorkflowCtx, target: &u64) -> Result<u64> {
//!         let target = *target;
//!         ctx.repeat(0u64).commit_every(20).run(move |ctx, total| async move {
//!             *total = ctx.activity(AddOne { value: *total }).await?;
//!             Ok(if *total >= target { Loop::Break(*total) } else { Loop::Continue })
//!         }.boxed()).await
//!     }
//! }
//!
//! # async fn main_() -> anyhow::Result<()> {
//! let engine = Engine::open("sqlite://octane.db").await?.register::<Counter>();
//! let worker = engine.worker().concurrency(256).spawn();
//! let id = engine.dispatch::<Counter>(1_000).tag("tenant", "acme").await?;
//! let total = engine.wait::<Counter>(id).await?;
//! worker.shutdown().await;
//! # assert_eq!(total, 1_000);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod activity;
pub mod clock;
mod ctx;
#[cfg(feature = "dashboard")]
mod dashboard;
mod engine;
mod error;
mod export;
pub mod history;
mod loop_state;
pub mod loops;
mod message;
mod replay_check;
mod runtime;
mod schedule;
mod signal;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod worker;

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
}

pub use activity::{Activity, ActivityCtx, RetryPolicy};
pub use ctx::{Child, Join, MessageSend, SignalDraft, SignalSend, Workflow, WorkflowCtx};
#[cfg(feature = "dashboard")]
pub use dashboard::{Dashboard, DashboardBuilder};
pub use engine::{Dispatch, DispatchJson, Engine, HistoryEntry, Page, SignalBuilder};
pub use error::{Error, HISTORY_DIVERGED};
pub use export::{WorkflowExport, EXPORT_FORMAT};
pub use loop_state::{LoopState, LoopSummary};
pub use loops::{Loop, Repeat};
pub use message::{Message, Subscription};
/// Derives [`Message`](trait@Message) (name: the type's in snake case, or `#[message(name = "…")]`).
pub use octane_macros::Message;
/// Derives [`Signal`](trait@Signal) (name: the type's in snake case, or `#[signal(name = "…")]`).
pub use octane_macros::Signal;
pub use replay_check::{ReplayCheck, ReplayReport, Verdict};
pub use runtime::DEFAULT_MAX_LOOP_STATE;
pub use schedule::ScheduleBuilder;
pub use signal::{Listen, Signal};
pub use store::{
    FailureCode, IfFinished, ListCursor, ListFilter, ScheduleInfo, WorkflowId, WorkflowInfo,
    WorkflowState,
};
pub use worker::{Worker, WorkerBuilder};

/// What workflow code needs in scope: `use octane::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Activity, ActivityCtx, Engine, Loop, Message, RetryPolicy, Signal, Workflow, WorkflowCtx,
        WorkflowId,
    };
    pub use anyhow::Result;
    pub use futures::FutureExt;
    pub use serde::{Deserialize, Serialize};
}
