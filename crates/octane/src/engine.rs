//! The [`Engine`]: the entry point for dispatching, waiting on and
//! inspecting workflows, and for spawning workers.

use std::collections::{BTreeMap, HashMap};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::Notify;

use crate::clock::now_ms;
use crate::ctx::WorkflowCtx;
use crate::error::{delivery_result, Error};
use crate::history::{forgotten_ranges, is_forgotten, Event, EventKind, LoopBoundary};
use crate::message::{Message, MessageBus, Subscription};
use crate::signal::Signal;
use crate::store::{
    self, Control, ListFilter, NewSignal, NewWorkflow, SignalTarget, Store, WorkflowId,
    WorkflowInfo, WorkflowState,
};
use crate::worker::WorkerBuilder;
use crate::workflow::Workflow;

/// The default cap on a loop's serialized state: 1 MiB.
pub const DEFAULT_MAX_LOOP_STATE: usize = 1 << 20;

/// How many workflows one pruning transaction deletes at most.
const PRUNE_BATCH: usize = 500;

/// How a registered workflow's run failed before or after its code.
pub(crate) enum RunError {
    /// The stored input does not deserialize.
    Input(String),
    /// The code returned an error (or the output does not serialize).
    Workflow(anyhow::Error),
}

type RunFn = fn(WorkflowCtx, String) -> BoxFuture<'static, Result<String, RunError>>;
type CheckFn = fn(&str) -> Result<(), String>;

#[derive(Clone, Copy)]
pub(crate) struct Registered {
    pub name: &'static str,
    pub run: RunFn,
    check_input: CheckFn,
}

fn run_erased<W: Workflow>(
    mut ctx: WorkflowCtx,
    input: String,
) -> BoxFuture<'static, Result<String, RunError>> {
    async move {
        let input: W::Input =
            serde_json::from_str(&input).map_err(|e| RunError::Input(e.to_string()))?;
        let output = W::run(&mut ctx, &input).await.map_err(RunError::Workflow)?;
        serde_json::to_string(&output).map_err(|e| RunError::Workflow(e.into()))
    }
    .boxed()
}

fn check_input<W: Workflow>(json: &str) -> Result<(), String> {
    serde_json::from_str::<W::Input>(json)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[derive(Clone, Debug)]
pub(crate) struct EngineConfig {
    pub max_loop_state: usize,
    pub sleep_in_memory_below: Duration,
    pub retain_finished: Option<Duration>,
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    registry: RwLock<HashMap<&'static str, Registered>>,
    config: RwLock<EngineConfig>,
    /// Something became runnable: wakes a waiting worker at once.
    pub runnable: Arc<Notify>,
    /// Where workflows publish messages.
    pub bus: MessageBus,
    /// Some workflow finished: wakes `wait` callers.
    pub finished: Notify,
}

/// A handle to the workflow engine; cheap to clone.
///
/// ```no_run
/// use octane::prelude::*;
///
/// # struct Counter;
/// # impl Workflow for Counter { const NAME: &'static str = "counter"; type Input = u64; type Output = u64;
/// #   async fn run(_: &mut WorkflowCtx, n: &u64) -> Result<u64> { Ok(*n) } }
/// # async fn f() -> anyhow::Result<()> {
/// let engine = Engine::open("sqlite://octane.db").await?.register::<Counter>();
/// let worker = engine.worker().concurrency(256).spawn();
/// let id = engine.dispatch::<Counter>(1_000).tag("tenant", "acme").await?;
/// let total = engine.wait::<Counter>(id).await?;
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    /// Opens the database a URL names (`sqlite://PATH`), migrating its
    /// schema.
    ///
    /// # Errors
    /// An unsupported URL, or a database that cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Engine, Error> {
        Ok(Engine::with_store(store::open(url).await?))
    }

    /// An engine over an already opened store (for example a wrapper that
    /// injects faults around a real one).
    pub fn with_store(store: Arc<dyn Store>) -> Engine {
        let runnable = Arc::new(Notify::new());
        store.watch_runnable(runnable.clone());
        Engine {
            inner: Arc::new(Inner {
                store,
                registry: RwLock::new(HashMap::new()),
                config: RwLock::new(EngineConfig {
                    max_loop_state: DEFAULT_MAX_LOOP_STATE,
                    sleep_in_memory_below: Duration::from_secs(1),
                    retain_finished: None,
                }),
                runnable,
                bus: MessageBus::new(),
                finished: Notify::new(),
            }),
        }
    }

    /// Registers a workflow type, so that workers of this engine run it.
    pub fn register<W: Workflow>(self) -> Self {
        self.inner.registry.write().expect("registry lock").insert(
            W::NAME,
            Registered {
                name: W::NAME,
                run: run_erased::<W>,
                check_input: check_input::<W>,
            },
        );
        self
    }

    /// Caps the serialized size of loop states (default 1 MiB); a loop over
    /// the cap fails its workflow with [`Error::LoopStateTooLarge`].
    pub fn max_loop_state(self, bytes: usize) -> Self {
        self.inner
            .config
            .write()
            .expect("config lock")
            .max_loop_state = bytes;
        self
    }

    /// Sleeps shorter than `d` (default 1 s) wait in the worker's memory;
    /// longer ones evict the workflow until its deadline.
    pub fn sleep_in_memory_below(self, d: Duration) -> Self {
        self.inner
            .config
            .write()
            .expect("config lock")
            .sleep_in_memory_below = d;
        self
    }

    /// Keeps finished workflows (completed, failed or cancelled) for `d`
    /// after they finish; then this engine's workers delete them with their
    /// history, checking every quarter of `d` (at least every minute).
    /// Without it, finished workflows stay until [`Engine::prune`]. A parent
    /// that already recorded a child's outcome does not need the child.
    pub fn retain_finished(self, d: Duration) -> Self {
        self.inner
            .config
            .write()
            .expect("config lock")
            .retain_finished = Some(d);
        self
    }

    pub(crate) fn config(&self) -> EngineConfig {
        self.inner.config.read().expect("config lock").clone()
    }

    pub(crate) fn registered(&self, name: &str) -> Option<Registered> {
        self.inner
            .registry
            .read()
            .expect("registry lock")
            .get(name)
            .copied()
    }

    /// The names of the registered workflows, sorted.
    pub fn registered_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .inner
            .registry
            .read()
            .expect("registry lock")
            .keys()
            .map(|n| n.to_string())
            .collect();
        names.sort();
        names
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// A builder for a worker that runs this engine's registered workflows.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.clone())
    }

    /// Starts a workflow of type `W`; await the returned builder (after
    /// adding tags) to get its id.
    ///
    /// `W` need not be registered on this engine: a worker elsewhere may run
    /// it.
    pub fn dispatch<W: Workflow>(&self, input: W::Input) -> Dispatch<'_, W> {
        Dispatch {
            engine: self,
            input,
            tags: BTreeMap::new(),
        }
    }

    /// Starts a workflow by name with a JSON input, as tools do.
    ///
    /// # Errors
    /// [`Error::UnknownWorkflow`] for a name not registered on this engine;
    /// [`Error::InvalidInput`] for an input that does not deserialize into
    /// the workflow's input type. Nothing is stored in either case.
    pub async fn dispatch_json(
        &self,
        name: &str,
        input: &str,
        tags: BTreeMap<String, String>,
    ) -> Result<WorkflowId, Error> {
        let registered = self
            .registered(name)
            .ok_or_else(|| Error::UnknownWorkflow {
                name: name.to_string(),
                registered: self.registered_names(),
            })?;
        (registered.check_input)(input).map_err(|message| Error::InvalidInput {
            workflow: name.to_string(),
            message,
        })?;
        self.insert(registered.name.to_string(), input.to_string(), tags)
            .await
    }

    async fn insert(
        &self,
        name: String,
        input: String,
        tags: BTreeMap<String, String>,
    ) -> Result<WorkflowId, Error> {
        let id = WorkflowId::new();
        self.inner
            .store
            .create(NewWorkflow {
                id,
                name,
                input,
                tags,
                now: now_ms(),
                parent: None,
            })
            .await?;
        self.inner.runnable.notify_one();
        Ok(id)
    }

    /// Waits until the workflow finishes and returns its output.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`], [`Error::WrongWorkflow`] when `id` is of
    /// another type, [`Error::WorkflowFailed`], [`Error::WorkflowCancelled`],
    /// [`Error::Decode`] when the stored output no longer deserializes.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn wait<W: Workflow>(&self, id: WorkflowId) -> Result<W::Output, Error> {
        let mut poll = Duration::from_millis(10);
        loop {
            let finished = self.inner.finished.notified();
            let info = self.get(id).await?;
            if info.name != W::NAME {
                return Err(Error::WrongWorkflow {
                    workflow_id: id,
                    expected: W::NAME,
                    actual: info.name,
                });
            }
            match info.state {
                WorkflowState::Completed => {
                    let json = info.output.unwrap_or_else(|| "null".into());
                    return serde_json::from_str(&json).map_err(|e| Error::Decode {
                        workflow_id: id,
                        location: crate::history::Location::root(),
                        what: format!("output of workflow `{}`", W::NAME),
                        message: e.to_string(),
                    });
                }
                WorkflowState::Failed => {
                    return Err(Error::WorkflowFailed {
                        workflow_id: id,
                        name: info.name,
                        message: info.error.unwrap_or_default(),
                    })
                }
                WorkflowState::Cancelled => {
                    return Err(Error::WorkflowCancelled { workflow_id: id })
                }
                _ => {}
            }
            // In-process completions notify at once; the poll covers workers
            // in other processes.
            let _ = tokio::time::timeout(poll, finished).await;
            poll = (poll * 2).min(Duration::from_millis(500));
        }
    }

    /// One workflow.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; a store error.
    pub async fn get(&self, id: WorkflowId) -> Result<WorkflowInfo, Error> {
        self.inner
            .store
            .get(id)
            .await?
            .ok_or(Error::WorkflowNotFound { workflow_id: id })
    }

    /// Workflows matching `filter`, newest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowInfo>, Error> {
        Ok(self.inner.store.list(filter).await?)
    }

    /// Cancels a workflow that has not finished. Its worker's next write is
    /// fenced off, so no step runs after the cancel commits.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::InvalidState`] if it finished.
    pub async fn cancel(&self, id: WorkflowId) -> Result<(), Error> {
        self.control(id, Control::Cancel, "cancel", |s| !s.is_finished())
            .await?;
        self.inner.finished.notify_waiters();
        Ok(())
    }

    /// Makes a failed workflow (for example one parked on a diverged
    /// history, after a fixed deploy) or a sleeping one runnable now. It
    /// replays its recorded history from the start.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::InvalidState`] in other states.
    pub async fn wake(&self, id: WorkflowId) -> Result<(), Error> {
        self.control(id, Control::Wake, "wake", |s| {
            matches!(s, WorkflowState::Failed | WorkflowState::Sleeping)
        })
        .await?;
        self.inner.runnable.notify_one();
        Ok(())
    }

    async fn control(
        &self,
        id: WorkflowId,
        control: Control,
        operation: &'static str,
        applies: impl Fn(WorkflowState) -> bool,
    ) -> Result<(), Error> {
        let before = self
            .inner
            .store
            .control(id, control, now_ms())
            .await?
            .ok_or(Error::WorkflowNotFound { workflow_id: id })?;
        if applies(before) {
            Ok(())
        } else {
            Err(Error::InvalidState {
                workflow_id: id,
                state: before,
                operation,
            })
        }
    }

    /// Serves every metric the engine records (loops, activities, workers,
    /// stores) for Prometheus at `http://ADDR/metrics`, by installing the
    /// process-wide `metrics` recorder. Needs the `prometheus` feature.
    ///
    /// # Errors
    /// [`Error::MetricsEndpoint`] when the address cannot be bound or a
    /// recorder is already installed.
    #[cfg(feature = "prometheus")]
    pub fn serve_metrics(&self, addr: std::net::SocketAddr) -> Result<(), Error> {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
            .map_err(|e| Error::MetricsEndpoint {
                addr: addr.to_string(),
                message: e.to_string(),
            })
    }

    /// Starts sending a signal from outside any workflow:
    /// `engine.signal(s).to(id).await` or `.to_tags(tags).await`.
    pub fn signal<S: Signal>(&self, signal: S) -> SignalBuilder<'_, S> {
        SignalBuilder {
            engine: self,
            signal,
        }
    }

    /// Sends a signal by name with a JSON body, as tools do. The engine
    /// does not know signal types, so the body is checked only when the
    /// workflow consumes it.
    ///
    /// # Errors
    /// As [`SignalBuilder::to`].
    pub async fn signal_json(&self, id: WorkflowId, name: &str, body: &str) -> Result<(), Error> {
        self.deliver(SignalTarget::Id(id), name, body.to_string())
            .await
            .map(drop)
    }

    async fn deliver(
        &self,
        target: SignalTarget,
        name: &str,
        body: String,
    ) -> Result<WorkflowId, Error> {
        let delivery = self
            .inner
            .store
            .send_signal(NewSignal {
                target: target.clone(),
                name: name.to_string(),
                body,
                now: now_ms(),
            })
            .await?;
        let id = delivery_result(name, &target, delivery)?;
        self.inner.runnable.notify_one();
        Ok(id)
    }

    /// Subscribes to messages of type `M` whose tags include `tags`.
    /// Messages are ephemeral: only those published after this call, by
    /// workflows running in this process, arrive.
    pub fn subscribe<M: Message, K: Into<String>, V: Into<String>>(
        &self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Subscription<M> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.inner.bus.subscribe(tags)
    }

    /// Deletes workflows that finished more than `older_than` ago, with
    /// their history. Returns how many.
    ///
    /// # Errors
    /// A store error; the batches deleted before it stay deleted.
    pub async fn prune(&self, older_than: Duration) -> Result<u64, Error> {
        self.prune_with_progress(older_than, |_| {}).await
    }

    /// [`Engine::prune`], in transactions of at most 500 workflows so that
    /// a large prune never holds the database for long; `progress` gets the
    /// running total after each batch that deleted something.
    ///
    /// Only workflows that had finished when the call started are deleted,
    /// so the prune ends even while others keep finishing.
    ///
    /// # Errors
    /// A store error; the batches deleted before it stay deleted.
    pub async fn prune_with_progress(
        &self,
        older_than: Duration,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, Error> {
        let before = now_ms().saturating_sub(crate::clock::duration_ms(older_than));
        let mut total = 0;
        loop {
            let n = self.inner.store.prune(before, PRUNE_BATCH).await?;
            total += n;
            if n > 0 {
                metrics::counter!("octane_pruned_total").increment(n);
                progress(total);
            }
            if n < PRUNE_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Every stored event of a workflow in history order, each marked
    /// whether it is forgotten (replay no longer reads it).
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; a store error.
    pub async fn history(&self, id: WorkflowId) -> Result<Vec<HistoryEntry>, Error> {
        self.get(id).await?;
        let events = self.inner.store.all_events(id).await?;
        let boundaries = events
            .iter()
            .filter(|e| e.kind == EventKind::Loop)
            .map(|e| LoopBoundary {
                location: e.location.clone(),
                first_active: if e.done { u64::MAX } else { e.iteration },
            })
            .collect();
        let forgotten = forgotten_ranges(boundaries);
        Ok(events
            .into_iter()
            .map(|event| HistoryEntry {
                forgotten: is_forgotten(&event.location, &forgotten),
                event,
            })
            .collect())
    }
}

/// One stored event, as [`Engine::history`] returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryEntry {
    /// The event.
    pub event: Event,
    /// Whether it belongs to a forgotten loop iteration.
    pub forgotten: bool,
}

/// A signal about to be sent from outside any workflow; see
/// [`Engine::signal`].
#[must_use = "a signal is sent by `.to(id).await` or `.to_tags(tags).await`"]
pub struct SignalBuilder<'e, S> {
    engine: &'e Engine,
    signal: S,
}

impl<S: Signal> SignalBuilder<'_, S> {
    /// Sends the signal to the workflow with this id. If the workflow is
    /// waiting for it, it is made runnable in the same transaction.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`], or [`Error::SignalRejected`] when the
    /// workflow has finished; nothing is stored then.
    pub async fn to(self, id: WorkflowId) -> Result<(), Error> {
        self.send(SignalTarget::Id(id)).await.map(drop)
    }

    /// Sends the signal to the one unfinished workflow carrying all these
    /// tags, and returns its id.
    ///
    /// # Errors
    /// [`Error::NoSignalTarget`] or [`Error::AmbiguousSignalTarget`] unless
    /// exactly one workflow matches; nothing is stored then.
    pub async fn to_tags<K: Into<String>, V: Into<String>>(
        self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Result<WorkflowId, Error> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.send(SignalTarget::Tags(tags)).await
    }

    async fn send(self, target: SignalTarget) -> Result<WorkflowId, Error> {
        let body = serde_json::to_string(&self.signal).map_err(|e| Error::Encode {
            what: format!("signal `{}`", S::NAME),
            message: e.to_string(),
        })?;
        self.engine.deliver(target, S::NAME, body).await
    }
}

/// A workflow about to be dispatched; `.await` it to store it.
#[must_use = "a dispatch does nothing until awaited"]
pub struct Dispatch<'e, W: Workflow> {
    engine: &'e Engine,
    input: W::Input,
    tags: BTreeMap<String, String>,
}

impl<W: Workflow> Dispatch<'_, W> {
    /// Adds a tag, by which the workflow can be listed and found.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }
}

impl<'e, W: Workflow> IntoFuture for Dispatch<'e, W> {
    type Output = Result<WorkflowId, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'e>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let input = serde_json::to_string(&self.input).map_err(|e| Error::Encode {
                what: format!("input of workflow `{}`", W::NAME),
                message: e.to_string(),
            })?;
            self.engine
                .insert(W::NAME.to_string(), input, self.tags)
                .await
        })
    }
}
