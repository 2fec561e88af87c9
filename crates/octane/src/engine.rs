//! The [`Engine`]: the entry point for dispatching, waiting on and
//! inspecting workflows, and for spawning workers.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use crate::ctx::Workflow;
use crate::error::{delivery_result, Error};
use crate::history::{forgotten_ranges, is_forgotten, Event, EventKind, LoopBoundary};
use crate::message::{Message, Subscription};
use crate::runtime::Core;
use crate::signal::Signal;
use crate::store::{
    self, Catalog, Census, Control, DispatchKey, IfFinished, ListCursor, ListFilter, NewSignal,
    NewWorkflow, PendingSignal, SignalTarget, Store, WorkflowId, WorkflowInfo, WorkflowState,
};
use crate::worker::WorkerBuilder;

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
///
/// The builder methods ([`Engine::register`], [`Engine::max_loop_state`], …)
/// return an engine with the change made; a worker runs the workflows and
/// settings of the engine it was spawned from, and never sees later changes.
#[derive(Clone)]
pub struct Engine {
    core: Arc<Core>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("registered", &self.core.registry.names())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the database a URL names, migrating its schema:
    /// `sqlite://PATH[?synchronous=normal]` (a file, created if missing) or
    /// `postgres://USER:PASSWORD@HOST[:PORT]/DATABASE`.
    ///
    /// # Errors
    /// [`Error::Store`] with [`StoreError::BadUrl`](crate::store::StoreError::BadUrl)
    /// for a URL Octane does not understand; [`Error::Open`] for a database
    /// that cannot be reached or migrated. No message shows the password.
    pub async fn open(url: &str) -> Result<Engine, Error> {
        match store::open(url).await {
            Ok(store) => {
                let label = store::mask_password(url);
                Ok(Engine::with_store(store).with(|core| core.store_url = Some(label)))
            }
            Err(e @ store::StoreError::BadUrl { .. }) => Err(Error::Store(e)),
            Err(source) => Err(Error::Open {
                url: store::mask_password(url),
                source,
            }),
        }
    }

    /// An engine over an already opened store (for example a wrapper that
    /// injects faults around a real one).
    pub fn with_store(store: Arc<dyn Store>) -> Engine {
        Engine {
            core: Arc::new(Core::new(store)),
        }
    }

    /// This engine with a change to its core: copied unless no worker or
    /// clone shares it.
    fn with(mut self, change: impl FnOnce(&mut Core)) -> Self {
        change(Arc::make_mut(&mut self.core));
        self
    }

    /// Registers a workflow type, so that workers spawned from this engine
    /// run it.
    pub fn register<W: Workflow>(self) -> Self {
        self.with(|core| core.registry.insert::<W>())
    }

    /// Caps the serialized size of loop states (default 1 MiB); a loop over
    /// the cap parks its workflow with [`Error::LoopStateTooLarge`].
    pub fn max_loop_state(self, bytes: usize) -> Self {
        self.with(|core| core.env.config.max_loop_state = bytes)
    }

    /// Sleeps shorter than `d` (default 1 s) wait in the worker's memory;
    /// longer ones evict the workflow until its deadline.
    pub fn sleep_in_memory_below(self, d: Duration) -> Self {
        self.with(|core| core.env.config.sleep_in_memory_below = d)
    }

    /// Keeps finished workflows (completed, failed or cancelled) for `d`
    /// after they finish; then this engine's workers delete them with their
    /// history, checking every quarter of `d` (at least every minute).
    /// Without it, finished workflows stay until [`Engine::prune`]. A parent
    /// that already recorded a child's outcome does not need the child; one
    /// that had not gets an error saying the child is gone. Parked
    /// workflows are never pruned.
    pub fn retain_finished(self, d: Duration) -> Self {
        self.with(|core| core.retain_finished = Some(d))
    }

    /// The names of the registered workflows, sorted.
    pub fn registered_names(&self) -> Vec<String> {
        self.core.registry.names()
    }

    /// The store behind the engine.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.core.store()
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// This engine reading workflow time from `clock`.
    #[cfg(feature = "testing")]
    pub(crate) fn with_clock(self, clock: Clock) -> Self {
        self.with(|core| core.env.clock = clock)
    }

    /// Where this engine's workflow time comes from.
    pub(crate) fn clock(&self) -> &Clock {
        &self.core.env.clock
    }

    fn catalog(&self) -> &dyn Catalog {
        self.core.store().catalog()
    }

    /// A builder for a worker that runs this engine's registered workflows.
    pub fn worker(&self) -> WorkerBuilder {
        WorkerBuilder::new(self.core.clone())
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
            options: Options::default(),
        }
    }

    /// Starts a workflow by name with a JSON input, as tools do; await the
    /// returned builder (after a key or a deadline, as for
    /// [`dispatch`](Self::dispatch)) to get its id.
    ///
    /// # Errors
    /// [`Error::UnknownWorkflow`] for a name not registered on this engine;
    /// [`Error::InvalidInput`] for an input that does not deserialize into
    /// the workflow's input type. Nothing is stored in either case.
    pub fn dispatch_json<'e>(
        &'e self,
        name: &'e str,
        input: &'e str,
        tags: BTreeMap<String, String>,
    ) -> DispatchJson<'e> {
        DispatchJson {
            engine: self,
            name,
            input,
            options: Options {
                tags,
                ..Options::default()
            },
        }
    }

    async fn insert_json(&self, d: DispatchJson<'_>) -> Result<WorkflowId, Error> {
        let registered = self
            .core
            .registry
            .get(d.name)
            .ok_or_else(|| Error::UnknownWorkflow {
                name: d.name.to_string(),
                registered: self.registered_names(),
            })?;
        (registered.check_input)(d.input).map_err(|message| Error::InvalidInput {
            workflow: d.name.to_string(),
            message,
        })?;
        self.insert(registered.name.to_string(), d.input.to_string(), d.options)
            .await
    }

    async fn insert(
        &self,
        name: String,
        input: String,
        options: Options,
    ) -> Result<WorkflowId, Error> {
        let id = WorkflowId::new();
        let now = self.clock().now_ms();
        let key = options.dispatch_key();
        let holder = self
            .catalog()
            .create(NewWorkflow {
                id,
                name,
                input,
                tags: options.tags,
                now,
                parent: None,
                key,
                deadline_at: options
                    .deadline
                    .map(|d| now.saturating_add(crate::clock::duration_ms(d))),
            })
            .await?;
        if holder == id {
            self.core.env.runnable.notify_one();
        }
        Ok(holder)
    }

    /// The workflow of type `W` dispatched with `key`: the unfinished one,
    /// or else the newest finished one still stored.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn find<W: Workflow>(&self, key: &str) -> Result<Option<WorkflowInfo>, Error> {
        let mut found = self
            .list(ListFilter::default().name(W::NAME).key(key).limit(2))
            .await?;
        // Newest first; an unfinished one outranks any finished one.
        found.sort_by_key(|w| w.state.is_finished());
        Ok(found.into_iter().next())
    }

    /// Waits until the workflow finishes and returns its output.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`], [`Error::WrongWorkflow`] when `id` is of
    /// another type, [`Error::WorkflowFailed`], [`Error::WorkflowCancelled`],
    /// [`Error::WorkflowParked`] (not final: it may be woken after a fix),
    /// [`Error::Decode`] when the stored output no longer deserializes.
    ///
    /// # Cancel safety
    /// Cancel-safe: it only reads.
    pub async fn wait<W: Workflow>(&self, id: WorkflowId) -> Result<W::Output, Error> {
        let watch = self.core.finishes.watch(id);
        // Finishes in this process wake the waiter at once, and so do those
        // of other processes when the store announces them; the polls,
        // backing off, cover the rest (and an announcement lost with the
        // process that was to send it).
        let longest = if self.core.finishes_announced {
            Duration::from_secs(5)
        } else {
            Duration::from_millis(500)
        };
        let mut poll = Duration::from_millis(10);
        loop {
            let finished = watch.notified();
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
                    return Err(Error::WorkflowCancelled {
                        workflow_id: id,
                        reason: info.error.unwrap_or_else(|| "cancelled".into()),
                    })
                }
                WorkflowState::Parked => {
                    return Err(Error::WorkflowParked {
                        workflow_id: id,
                        name: info.name,
                        code: info.code,
                        message: info.error.unwrap_or_default(),
                    })
                }
                WorkflowState::Pending | WorkflowState::Running | WorkflowState::Sleeping => {}
            }
            let _ = tokio::time::timeout(poll, finished).await;
            poll = (poll * 2).min(longest);
        }
    }

    /// One workflow.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; a store error.
    pub async fn get(&self, id: WorkflowId) -> Result<WorkflowInfo, Error> {
        self.catalog()
            .get(id)
            .await?
            .ok_or(Error::WorkflowNotFound { workflow_id: id })
    }

    /// Workflows matching `filter`, newest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<WorkflowInfo>, Error> {
        Ok(self.catalog().list(filter).await?)
    }

    /// One page of the workflows matching `filter`, newest first: at most
    /// `filter.limit` (default 100), and the cursor to pass as
    /// [`ListFilter::after`] for the next page, `None` on the last.
    ///
    /// # Errors
    /// A store error.
    pub async fn list_page(&self, mut filter: ListFilter) -> Result<Page, Error> {
        let limit = filter.limit.unwrap_or(100);
        // One more than asked tells whether another page follows.
        filter.limit = Some(limit + 1);
        let mut workflows = self.catalog().list(filter).await?;
        let more = workflows.len() > limit;
        workflows.truncate(limit);
        let next = if more {
            workflows.last().map(ListCursor::after)
        } else {
            None
        };
        Ok(Page { workflows, next })
    }

    /// Cancels a workflow that has not finished. Its worker's next write is
    /// fenced off, so no step runs after the cancel commits.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::InvalidState`] if it finished.
    pub async fn cancel(&self, id: WorkflowId) -> Result<(), Error> {
        self.control(id, Control::Cancel, "cancel", |s| !s.is_finished())
            .await?;
        self.core.finished(&[id]);
        Ok(())
    }

    /// Makes a parked workflow (for example one whose history diverged,
    /// after a fixed deploy) or a sleeping one runnable now. It replays its
    /// recorded history from the start and takes the signals that waited
    /// for it.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; [`Error::InvalidState`] in other states.
    pub async fn wake(&self, id: WorkflowId) -> Result<(), Error> {
        self.control(id, Control::Wake, "wake", |s| {
            matches!(s, WorkflowState::Parked | WorkflowState::Sleeping)
        })
        .await?;
        self.core.env.runnable.notify_one();
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
            .catalog()
            .control(id, control, self.clock().now_ms())
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
            .catalog()
            .send_signal(NewSignal {
                target: target.clone(),
                name: name.to_string(),
                body,
                now: self.clock().now_ms(),
            })
            .await?;
        let id = delivery_result(name, &target, delivery)?;
        self.core.env.runnable.notify_one();
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
        self.core.env.bus.subscribe(tags)
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
        progress: impl FnMut(u64),
    ) -> Result<u64, Error> {
        Ok(self.core.prune(older_than, progress).await?)
    }

    /// How many workflows there are of each name in each state, and the
    /// iterations all stored loops have checkpointed (see
    /// [`Catalog::census`]): what an overview shows.
    ///
    /// # Errors
    /// A store error.
    pub async fn census(&self) -> Result<Census, Error> {
        Ok(self.catalog().census().await?)
    }

    /// The oldest `limit` signals sent to a workflow that it has not
    /// consumed yet, whatever their names.
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; a store error.
    pub async fn pending_signals(
        &self,
        id: WorkflowId,
        limit: usize,
    ) -> Result<Vec<PendingSignal>, Error> {
        self.get(id).await?;
        Ok(self
            .catalog()
            .pending_signals(id, Vec::new(), limit)
            .await?)
    }

    /// Every stored event of a workflow in history order, each marked
    /// whether it is forgotten (replay no longer reads it).
    ///
    /// # Errors
    /// [`Error::WorkflowNotFound`]; a store error.
    pub async fn history(&self, id: WorkflowId) -> Result<Vec<HistoryEntry>, Error> {
        self.get(id).await?;
        let events = self.catalog().all_events(id).await?;
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

impl<S> std::fmt::Debug for SignalBuilder<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalBuilder").finish_non_exhaustive()
    }
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

/// One page of [`Engine::list_page`].
#[derive(Clone, Debug)]
pub struct Page {
    /// The workflows, newest first.
    pub workflows: Vec<WorkflowInfo>,
    /// Where the next page starts, if there is one.
    pub next: Option<ListCursor>,
}

/// A workflow about to be dispatched; `.await` it to store it.
#[must_use = "a dispatch does nothing until awaited"]
pub struct Dispatch<'e, W: Workflow> {
    engine: &'e Engine,
    input: W::Input,
    options: Options,
}

/// What both dispatch builders add to the workflow they store.
#[derive(Debug, Default)]
struct Options {
    tags: BTreeMap<String, String>,
    key: Option<String>,
    if_finished: IfFinished,
    unique: bool,
    deadline: Option<Duration>,
}

impl Options {
    /// The dispatch key: the one given, or the one `unique` makes of the
    /// tags (their JSON, in key order: the same tags give the same key).
    fn dispatch_key(&self) -> Option<DispatchKey> {
        if self.unique {
            let tags = serde_json::to_string(&self.tags).expect("string maps serialize");
            return Some(DispatchKey {
                key: format!("tags:{tags}"),
                if_finished: IfFinished::StartNew,
            });
        }
        self.key.clone().map(|key| DispatchKey {
            key,
            if_finished: self.if_finished,
        })
    }
}

/// A dispatch by name with a JSON input; see [`Engine::dispatch_json`].
#[must_use = "a dispatch does nothing until awaited"]
#[derive(Debug)]
pub struct DispatchJson<'e> {
    engine: &'e Engine,
    name: &'e str,
    input: &'e str,
    options: Options,
}

impl DispatchJson<'_> {
    /// As [`Dispatch::key`].
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.options.key = Some(key.into());
        self
    }

    /// As [`Dispatch::if_finished`].
    pub fn if_finished(mut self, policy: IfFinished) -> Self {
        self.options.if_finished = policy;
        self
    }

    /// As [`Dispatch::deadline`].
    pub fn deadline(mut self, after: Duration) -> Self {
        self.options.deadline = Some(after);
        self
    }
}

impl<'e> IntoFuture for DispatchJson<'e> {
    type Output = Result<WorkflowId, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'e>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.engine.insert_json(self).await })
    }
}

impl<W: Workflow> std::fmt::Debug for Dispatch<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatch")
            .field("workflow", &W::NAME)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<W: Workflow> Dispatch<'_, W> {
    /// Adds a tag, by which the workflow can be listed and found.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.options.tags.insert(key.into(), value.into());
        self
    }

    /// Starts the workflow idempotently: if a workflow of this type was
    /// dispatched with `key` and has not finished, the dispatch stores
    /// nothing and returns that workflow's id. Once it has finished, the
    /// dispatch returns it too, unless [`if_finished`](Self::if_finished)
    /// says to start a new one. Atomic across processes on both stores.
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # struct Order;
    /// # impl Workflow for Order {
    /// #     const NAME: &'static str = "order";
    /// #     type Input = u64;
    /// #     type Output = ();
    /// #     async fn run(_: &mut WorkflowCtx, _: &u64) -> Result<()> { Ok(()) }
    /// # }
    /// # async fn handler(engine: &Engine) -> Result<()> {
    /// // A retried request finds the order it started the first time.
    /// let first = engine.dispatch::<Order>(42).key("order-42").await?;
    /// let again = engine.dispatch::<Order>(42).key("order-42").await?;
    /// assert_eq!(first, again);
    /// # Ok(())
    /// # }
    /// ```
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.options.key = Some(key.into());
        self
    }

    /// What a keyed dispatch does when the workflow holding the key has
    /// finished (default [`IfFinished::Return`]); without a key it has no
    /// effect.
    pub fn if_finished(mut self, policy: IfFinished) -> Self {
        self.options.if_finished = policy;
        self
    }

    /// Starts the workflow unless an unfinished one of this type was
    /// dispatched `unique` with exactly the same tags, and returns that one
    /// instead: one actor per tag set (`user=42`), however many callers
    /// start it at once. Once it has finished, the next dispatch starts a
    /// new one. It is a dispatch key made of the tags (replacing any
    /// [`key`](Self::key)) with [`IfFinished::StartNew`], so it is atomic
    /// across processes as keys are; workflows dispatched without `unique`
    /// are not matched, whatever their tags.
    ///
    /// ```no_run
    /// # use octane::prelude::*;
    /// # struct Session;
    /// # impl Workflow for Session {
    /// #     const NAME: &'static str = "session";
    /// #     type Input = ();
    /// #     type Output = ();
    /// #     async fn run(_: &mut WorkflowCtx, _: &()) -> Result<()> { Ok(()) }
    /// # }
    /// # async fn handler(engine: &Engine) -> Result<()> {
    /// let a = engine.dispatch::<Session>(()).tag("user", "42").unique().await?;
    /// let b = engine.dispatch::<Session>(()).tag("user", "42").unique().await?;
    /// assert_eq!(a, b);
    /// # Ok(())
    /// # }
    /// ```
    pub fn unique(mut self) -> Self {
        self.options.unique = true;
        self
    }

    /// Cancels the workflow if it has not finished `after` from now: a
    /// worker cancels it within half a second of the deadline, whether it
    /// sleeps, waits for a signal or runs an activity (whose result is then
    /// never recorded). `wait` returns [`Error::WorkflowCancelled`] with
    /// the reason `deadline passed`, and a parent waiting on it is told as
    /// for any cancelled child.
    pub fn deadline(mut self, after: Duration) -> Self {
        self.options.deadline = Some(after);
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
                .insert(W::NAME.to_string(), input, self.options)
                .await
        })
    }
}
