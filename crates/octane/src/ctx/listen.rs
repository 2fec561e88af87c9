//! Waiting for signals, and sending them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{encode, Interrupt, Step, WorkflowCtx};
use crate::clock::duration_ms;
use crate::error::{delivery_result, Error};
use crate::history::{input_hash, Event, EventKind, Location};
use crate::signal::{Listen, Signal};
use crate::store::{Delivery, NewSignal, SignalTarget, Suspend, Transition, WorkflowId, WriteOp};

/// How a listen step waits: part of its identity in history, so that code
/// changed from one way to another replays as a divergence.
enum Way {
    /// `listen`: one signal, however long it takes. Hash 0, as recorded
    /// before the ways were told apart.
    One,
    /// `listen_n`: up to n signals.
    Many,
    /// `listen_with_timeout`: one signal or none.
    Timeout,
}

impl Way {
    fn hash(&self) -> u64 {
        match self {
            Way::One => 0,
            Way::Many => input_hash(b"listen_n"),
            Way::Timeout => input_hash(b"listen_with_timeout"),
        }
    }
}

/// At most 200 characters of a signal body, for an error message.
fn abbreviated(body: &str) -> String {
    match body.char_indices().nth(200) {
        Some((end, _)) => format!("{}…", &body[..end]),
        None => body.to_string(),
    }
}

/// A consumed signal as recorded in history.
#[derive(Serialize, Deserialize)]
struct Received {
    name: String,
    body: String,
}

impl WorkflowCtx {
    /// Waits for a signal of type `L` (one [`Signal`] type, or an enum of
    /// several made with [`join_signal!`](crate::join_signal)) and consumes
    /// it. Signals are consumed in the order they were sent, exactly once:
    /// the consumption is recorded in the same transaction that removes the
    /// signal, and replay returns the record.
    ///
    /// With no signal pending the workflow leaves memory; the signal's
    /// arrival makes it runnable again.
    ///
    /// # Errors
    /// [`Error::Yield`] while waiting (propagate it with `?`); a step error.
    pub async fn listen<L: Listen>(&mut self) -> Result<L, Error> {
        let got = self.listen_step::<L>(Way::One, 1, None).await?;
        got.into_iter().next().ok_or_else(|| {
            // Only a record made by other code (a listen that timed out) can
            // hold nothing; the step identities tell them apart, so this is
            // a history written by a build that did not.
            self.run().park(Error::HistoryDiverged {
                workflow_id: self.workflow_id(),
                location: self.branch_location().clone(),
                recorded: "signals received: none".into(),
                requested: "a listen that waits for one".into(),
            })
        })
    }

    /// Like [`WorkflowCtx::listen`], but gives up after `timeout` and
    /// returns `None`. The deadline is recorded on the first run, so
    /// replays and wake-ups keep it.
    ///
    /// # Errors
    /// [`Error::Yield`] while waiting; a step error.
    pub async fn listen_with_timeout<L: Listen>(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<L>, Error> {
        Ok(self
            .listen_step::<L>(Way::Timeout, 1, Some(timeout))
            .await?
            .into_iter()
            .next())
    }

    /// Waits for at least one signal of type `L` and consumes up to `n`,
    /// returned in send order (and in that same recorded order on replay).
    ///
    /// # Errors
    /// [`Error::Yield`] while waiting; a step error.
    pub async fn listen_n<L: Listen>(&mut self, n: usize) -> Result<Vec<L>, Error> {
        self.listen_step::<L>(Way::Many, n.max(1), None).await
    }

    async fn listen_step<L: Listen>(
        &mut self,
        way: Way,
        limit: usize,
        timeout: Option<Duration>,
    ) -> Result<Vec<L>, Error> {
        let names: Vec<String> = L::names().into_iter().map(str::to_string).collect();
        let (step, req) = self.resolve(EventKind::Signal, &names.join("|"), way.hash())?;
        let run = self.run().clone();
        let (location, deadline) = match step {
            Step::Replay(e) if e.done => {
                return self.decode_received::<L>(&e.location, e.data.as_deref())
            }
            Step::Replay(e) => {
                let deadline: Option<i64> =
                    self.decode("listen deadline", &e.location, e.data.as_deref())?;
                (e.location, deadline)
            }
            Step::Live(location) => {
                let deadline = timeout.map(|t| run.clock.now_ms().saturating_add(duration_ms(t)));
                if let Some(d) = deadline {
                    let mut e = Event::new(location.clone(), &req);
                    e.data = Some(d.to_string());
                    run.defer(WriteOp::Put(e));
                }
                (location, deadline)
            }
        };
        let pending = run.pending_signals(&names, limit).await?;
        let mut received = Vec::new();
        let mut values = Vec::new();
        let mut seqs = Vec::new();
        for p in pending {
            match L::decode(&p.name, &p.body) {
                Ok(v) => {
                    seqs.push(p.seq);
                    values.push(v);
                    received.push(Received {
                        name: p.name,
                        body: p.body,
                    });
                }
                // Signals are taken in send order: the ones before it are
                // consumed, and this one stays pending.
                Err(_) if !values.is_empty() => break,
                // A signal the sender was told was delivered is never
                // dropped: the workflow is parked with the signal kept, so
                // that code that accepts it can take it after a wake-up.
                Err(e) => {
                    return Err(run.park(Error::Decode {
                        workflow_id: run.workflow_id,
                        location,
                        what: format!("signal `{}`", p.name),
                        message: format!("{e}; its body: {}", abbreviated(&p.body)),
                    }))
                }
            }
        }
        if !values.is_empty() {
            let event = Event::new(location, &req).finished(encode("received signals", &received)?);
            run.commit(
                vec![WriteOp::Put(event), WriteOp::AckSignals(seqs)],
                Transition::Continue,
            )
            .await?;
            return Ok(values);
        }
        if let Some(d) = deadline {
            if run.clock.now_ms() >= d {
                run.defer(WriteOp::Put(
                    Event::new(location, &req).finished("[]".into()),
                ));
                return Ok(Vec::new());
            }
        }
        run.interrupt(Interrupt::Suspend(Suspend {
            wake_at: deadline,
            signals: names,
            child: None,
        }));
        Err(run.yield_error("waiting for a signal"))
    }

    fn decode_received<L: Listen>(
        &self,
        location: &Location,
        data: Option<&str>,
    ) -> Result<Vec<L>, Error> {
        let received: Vec<Received> = self.decode("received signals", location, data)?;
        received
            .into_iter()
            .map(|r| {
                L::decode(&r.name, &r.body).map_err(|e| {
                    self.run().park(Error::Decode {
                        workflow_id: self.workflow_id(),
                        location: location.clone(),
                        what: format!("signal `{}`", r.name),
                        message: e.to_string(),
                    })
                })
            })
            .collect()
    }

    /// Starts sending a signal: `ctx.signal(s).to(id).send().await`.
    pub fn signal<S: Signal>(&mut self, signal: S) -> SignalDraft<'_, S> {
        SignalDraft { ctx: self, signal }
    }
}

/// A signal without a recipient yet; see [`WorkflowCtx::signal`].
#[must_use = "a signal needs `.to(id)` or `.to_tags(tags)`, then `.send()`"]
pub struct SignalDraft<'c, S> {
    ctx: &'c mut WorkflowCtx,
    signal: S,
}

impl<S> std::fmt::Debug for SignalDraft<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalDraft")
            .field("workflow_id", &self.ctx.workflow_id())
            .finish_non_exhaustive()
    }
}

impl<'c, S: Signal> SignalDraft<'c, S> {
    /// To the workflow with this id.
    pub fn to(self, id: WorkflowId) -> SignalSend<'c, S> {
        SignalSend {
            ctx: self.ctx,
            signal: self.signal,
            target: SignalTarget::Id(id),
        }
    }

    /// To the one unfinished workflow carrying all these tags.
    pub fn to_tags<K: Into<String>, V: Into<String>>(
        self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> SignalSend<'c, S> {
        let tags = tags
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        SignalSend {
            ctx: self.ctx,
            signal: self.signal,
            target: SignalTarget::Tags(tags),
        }
    }
}

/// A signal ready to send from a workflow.
#[must_use = "a signal is sent by `.send().await`"]
pub struct SignalSend<'c, S> {
    ctx: &'c mut WorkflowCtx,
    signal: S,
    target: SignalTarget,
}

impl<S> std::fmt::Debug for SignalSend<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalSend")
            .field("workflow_id", &self.ctx.workflow_id())
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl<S: Signal> SignalSend<'_, S> {
    /// Sends the signal, exactly once: the send and its record share a
    /// transaction, and replay returns the recorded outcome (an error too).
    ///
    /// # Errors
    /// The recipient is unknown, finished, or (by tags) not exactly one
    /// workflow; a step error.
    pub async fn send(self) -> Result<(), Error> {
        let body = encode(&format!("signal `{}`", S::NAME), &self.signal)?;
        let target_key = encode("signal target", &TargetKey::from(&self.target))?;
        let hash = input_hash(format!("{target_key}\n{body}").as_bytes());
        let (step, req) = self.ctx.resolve(EventKind::SignalSend, S::NAME, hash)?;
        let run = self.ctx.run().clone();
        let delivery: Delivery = match step {
            Step::Replay(e) => {
                self.ctx
                    .decode("signal delivery", &e.location, e.data.as_deref())?
            }
            Step::Live(location) => {
                let delivery = run.resolve_target(&self.target).await?;
                let event =
                    Event::new(location, &req).finished(encode("signal delivery", &delivery)?);
                let mut ops = vec![WriteOp::Put(event)];
                if let Delivery::Delivered(id) = delivery {
                    ops.push(WriteOp::SendSignal(NewSignal {
                        target: SignalTarget::Id(id),
                        name: S::NAME.to_string(),
                        body,
                        now: run.clock.now_ms(),
                    }));
                }
                run.commit(ops, Transition::Continue).await?;
                delivery
            }
        };
        delivery_result(S::NAME, &self.target, delivery).map(drop)
    }
}

/// A stable, hashable form of a signal target.
#[derive(Serialize)]
enum TargetKey<'a> {
    Id(String),
    Tags(&'a BTreeMap<String, String>),
}

impl<'a> From<&'a SignalTarget> for TargetKey<'a> {
    fn from(t: &'a SignalTarget) -> Self {
        match t {
            SignalTarget::Id(id) => TargetKey::Id(id.to_string()),
            SignalTarget::Tags(tags) => TargetKey::Tags(tags),
        }
    }
}
