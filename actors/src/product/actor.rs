//! The product as an actor: its rules behind the shell's [`Kind`] trait, and the shell's
//! product-only handlers — decide and record (with an expected version), hand a decided
//! generation to the task queue (or run it beside the actor), carry out the decision in flight
//! when its task runs, and record the outcome.

use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::Utc;
use mall_events::domain::{DomainEvent, GeneratorChoice};
use mall_events::ids::{ProductId, tag};
use mall_events::{Direction, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamId};
use uuid::Uuid;

use super::{Command, DecideInput, ProductState};
use crate::executors::offline::OfflineGenerator;
use crate::executors::{self, Facts};
use crate::product;
use crate::runtime::Runtime;
use crate::runtime::entity::{APPEND_ATTEMPTS, EntityActor, Kind, Source, Until, catch_up};

/// Product actors.
pub struct Product;
impl Kind for Product {
    type Id = ProductId;
    type State = ProductState;
    type Input = DecideInput;
    type Decision = Command;
    const NAME: &'static str = "product";
    fn decide(s: &ProductState, input: &DecideInput) -> Vec<Command> {
        product::decide(s, input)
    }
    fn source(id: &ProductId) -> Source {
        Source::Stream(StreamId::product(id))
    }
    fn route(e: &RecordedEvent, to: &mut dyn FnMut(ProductId)) {
        if let Some(id) = e.stream_id.as_str().strip_prefix("product-")
            && let Ok(id) = ProductId::parse(id)
        {
            to(id);
        }
    }
    fn cursor(s: &ProductState) -> u64 {
        s.version
    }
    fn last_position(s: &ProductState) -> u64 {
        s.position
    }
    fn evolve(s: &mut ProductState, e: &RecordedEvent, d: &DomainEvent, _: &Runtime) {
        s.evolve(d, e.position, e.stream_version);
    }
    fn pass(s: &mut ProductState, e: &RecordedEvent) {
        s.version = e.stream_version;
        s.position = e.position;
    }
    fn look(_: &mut EntityActor<Product>, ctx: &mut Context<EntityActor<Product>>) {
        ctx.notify(Decide);
    }
}

/// A generation finished: append its outcome (caused by `cause`, the task that ran it, when
/// one did) and say what was appended.
#[derive(Message)]
#[rtype(result = "()")]
struct Generated {
    outcome: DomainEvent,
    cause: Option<Uuid>,
    reply: Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
}

/// Carry out the product's decision in flight (the task queue's `generate`; `task` is the task's
/// id, which the outcome's events carry as their cause). Idempotent: with nothing in flight —
/// an earlier run recorded the outcome — it does nothing and says so.
#[derive(Message, Clone)]
#[rtype(result = "Result<String, String>")]
pub struct Execute {
    pub task: Uuid,
}

/// Look at the state and act on what `decide` returns (products).
#[derive(Message)]
#[rtype(result = "()")]
struct Decide;

impl Handler<Decide> for EntityActor<Product> {
    type Result = ();

    fn handle(&mut self, _: Decide, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else { return };
        // Only the node running the product's shard decides for it (another node may hold the
        // actor to answer what its state is).
        if !self.rt.shards().holds::<Product>(&self.id) {
            return;
        }
        let rt = self.rt.clone();
        let district = state.district.as_ref().map(|d| rt.district(d.as_str()));
        let id = self.id.clone();
        let addr = ctx.address();
        let fut = async move {
            let mut state = state;
            // Signals are appended to the product's stream beside the actor: a decision that
            // loses the race for the stream's version is decided again on the newer state, so
            // that the state a decision recorded is the one just before it in the stream.
            for _attempt in 0..APPEND_ATTEMPTS {
                let input = DecideInput {
                    prior: district.as_ref().map_or(crate::stats::Prior::DEFAULT, |d| d.prior),
                    budget_available: rt.budget.available_for(id.as_str()),
                    policy: rt.config.policy,
                    decision_id: Uuid::now_v7(),
                    now: Utc::now(),
                };
                let mut events = Vec::new();
                let mut to_execute = Vec::new();
                let mut taken = 0;
                // With a task queue, the call is taken from the budget when the task runs (a
                // decision that waits in the queue spends nothing); without one, now.
                let queued = rt.dispatcher().is_some();
                for c in <Product as Kind>::decide(&state, &input) {
                    if let Command::Optimize(d) = &c {
                        // The offline fallback costs no call; the configured generator does.
                        if d.generator == GeneratorChoice::Configured && !queued {
                            if !rt.budget.take(id.as_str()) {
                                continue;
                            }
                            taken += 1;
                        }
                        to_execute.push(d.clone());
                    }
                    events.push(c.into_event());
                }
                if events.is_empty() {
                    break;
                }
                match append(&rt, &id, &state, &events, None).await {
                    Ok(()) => {
                        let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
                        for d in to_execute {
                            let slug = state.district.as_ref().map_or("", |d| d.as_str());
                            if let Some(queue) = rt.dispatcher()
                                && queue.dispatch(&d, slug).await
                            {
                                continue;
                            }
                            // Generation runs beside the actor: signals keep folding while the model writes.
                            let (rt, state, district, addr) =
                                (rt.clone(), state.clone(), district.clone(), addr.clone());
                            actix::spawn(async move {
                                let outcome = generate(&rt, &state, district.as_ref(), &d).await;
                                addr.do_send(Generated { outcome, cause: None, reply: None });
                            });
                        }
                        break;
                    }
                    Err(StoreError::WrongExpectedVersion { .. }) => {
                        (0..taken).for_each(|_| rt.budget.refund(id.as_str()));
                        let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
                    }
                    Err(e) => {
                        (0..taken).for_each(|_| rt.budget.refund(id.as_str()));
                        tracing::error!(product = %id, error = %e, "cannot append a decision");
                        break;
                    }
                }
            }
            state
        };
        let policy = self.rt.config.policy;
        ctx.wait(fut.into_actor(self).map(move |state, act, ctx| {
            // A command backing off after failures is looked at again when its wait ends, not
            // only when the next signal or the idle tick comes.
            if let Some(at) = product::next_retry(&state, &policy) {
                let wait = (at - Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(10);
                let due = Instant::now() + wait;
                if act.wake_at.is_none_or(|w| w <= Instant::now() || w > due) {
                    act.wake_at = Some(due);
                    ctx.notify_later(Decide, wait);
                }
            }
            act.state = Some(state);
        }));
    }
}

/// Runs a decided generation with the generator the decision chose.
async fn generate(
    rt: &Runtime,
    state: &ProductState,
    district: Option<&crate::runtime::DistrictInfo>,
    d: &mall_events::domain::OptimizationDecided,
) -> DomainEvent {
    let facts = Facts::of(
        state,
        &district.map_or(String::new(), |d| d.name.clone()),
        district.and_then(|d| d.personality.clone()),
        d,
    );
    let generator: &dyn executors::Generator = match d.generator {
        GeneratorChoice::Configured => &*rt.generator,
        GeneratorChoice::Offline => &OfflineGenerator,
    };
    executors::execute(generator, &*rt.embedder, state, &facts, d, Utc::now()).await
}

/// The recorded decision `decision_id` of a product, read back from its stream.
async fn recorded_decision(
    rt: &Runtime,
    id: &ProductId,
    version: u64,
    decision_id: Uuid,
) -> Result<mall_events::domain::OptimizationDecided, String> {
    let stream = StreamId::product(id);
    let mut from = version;
    while from > 0 {
        let batch = rt.store.read_stream(&stream, from, Direction::Backward, 500).await.map_err(|e| e.to_string())?;
        let Some(last) = batch.last() else { break };
        for e in batch.iter().filter(|e| e.event_type == "optimization_decided") {
            if let Ok(DomainEvent::OptimizationDecided(d)) = e.decode()
                && d.decision_id == decision_id
            {
                return Ok(d);
            }
        }
        from = last.stream_version.saturating_sub(1);
    }
    Err(format!("decision {decision_id} is not in the product's stream"))
}

impl Handler<Execute> for EntityActor<Product> {
    type Result = ResponseActFuture<Self, Result<String, String>>;

    fn handle(&mut self, msg: Execute, ctx: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        let Some(state) = self.state.clone() else {
            return Box::pin(actix::fut::ready(Err("the product is loading; it is tried again".to_string())));
        };
        if !self.rt.shards().holds::<Product>(&self.id) {
            let why = format!("product {} is run by another node (its shard moved on); tried again", self.id);
            return Box::pin(actix::fut::ready(Err(why)));
        }
        let Some(flight) = state.in_flight.clone() else {
            return Box::pin(actix::fut::ready(Ok("nothing in flight: the outcome is in the log".to_string())));
        };
        if self.executing == Some(flight.decision_id) {
            return Box::pin(actix::fut::ready(Ok(format!("decision {} is being carried out", flight.decision_id))));
        }
        self.executing = Some(flight.decision_id);
        let (rt, id, addr) = (self.rt.clone(), self.id.clone(), ctx.address());
        let district = state.district.as_ref().map(|d| rt.district(d.as_str()));
        // Not `wait`: signals keep folding while the model writes.
        Box::pin(
            async move {
                let d = recorded_decision(&rt, &id, state.version, flight.decision_id).await?;
                // The model call is paid for now, as the generation runs; with the budget (or
                // the product's share of it) used up the task fails and is tried again later.
                if d.generator == GeneratorChoice::Configured && !rt.budget.take(id.as_str()) {
                    return Err(format!("the generation budget has no call left for product {id} this hour"));
                }
                let outcome = generate(&rt, &state, district.as_ref(), &d).await;
                let (tx, rx) = tokio::sync::oneshot::channel();
                addr.send(Generated { outcome, cause: Some(msg.task), reply: Some(tx) })
                    .await
                    .map_err(|e| format!("the product's actor stopped: {e}"))?;
                rx.await.map_err(|_| "the outcome was not recorded".to_string())?
            }
            .into_actor(self)
            .map(|r, act, _| {
                act.executing = None;
                r
            }),
        )
    }
}

/// Put a proposed price to a test (dynamic pricing's proposals): the product decides from its
/// state whether it can ([`product::price_test`]) and records the test's start; the answer is
/// the test's id or why not.
#[derive(Message, Clone)]
#[rtype(result = "Result<Uuid, String>")]
pub struct StartPriceTest(pub product::PriceProposal);

impl Handler<StartPriceTest> for EntityActor<Product> {
    type Result = ResponseFuture<Result<Uuid, String>>;

    fn handle(&mut self, msg: StartPriceTest, ctx: &mut Context<Self>) -> Self::Result {
        self.last_active = Instant::now();
        let Some(state) = self.state.clone() else {
            return Box::pin(std::future::ready(Err("the product is loading".to_string())));
        };
        let (rt, id) = (self.rt.clone(), self.id.clone());
        let fut = async move {
            let mut state = state;
            let mut answer = Err("the test could not be recorded".to_string());
            for _attempt in 0..APPEND_ATTEMPTS {
                let started = match product::price_test(&state, &msg.0, Uuid::now_v7(), Utc::now()) {
                    Ok(s) => s,
                    Err(why) => {
                        answer = Err(why);
                        break;
                    }
                };
                let test_id = started.test_id;
                match append(&rt, &id, &state, &[DomainEvent::PriceTestStarted(started)], None).await {
                    Ok(()) => {
                        answer = Ok(test_id);
                        break;
                    }
                    Err(StoreError::WrongExpectedVersion { .. }) => {
                        let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
                    }
                    Err(e) => {
                        answer = Err(format!("cannot record the test: {e}"));
                        break;
                    }
                }
            }
            let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
            (state, answer)
        };
        // `wait`: no other message changes the state between the decision and its append.
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.wait(fut.into_actor(self).map(|(state, answer), act, _| {
            act.state = Some(state);
            let _ = tx.send(answer);
        }));
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err("the product's actor stopped".to_string())) })
    }
}

impl Handler<Generated> for EntityActor<Product> {
    type Result = ();

    fn handle(&mut self, msg: Generated, ctx: &mut Context<Self>) {
        let Some(state) = self.state.clone() else {
            // Reloading after a panic: try again once loaded.
            ctx.notify_later(msg, Duration::from_millis(50));
            return;
        };
        let rt = self.rt.clone();
        let id = self.id.clone();
        let fut = async move {
            let mut state = state;
            let mut recorded = Err("the outcome could not be appended".to_string());
            for _attempt in 0..APPEND_ATTEMPTS {
                let mut events = vec![msg.outcome.clone()];
                if let DomainEvent::CopyGenerated(g) = &msg.outcome {
                    events.extend(product::on_generated(&state, g, Uuid::now_v7(), Utc::now()));
                }
                match append(&rt, &id, &state, &events, msg.cause).await {
                    Ok(()) => {
                        let types: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
                        recorded = Ok(types.join(", "));
                        break;
                    }
                    Err(StoreError::WrongExpectedVersion { .. }) => {
                        let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
                    }
                    Err(e) => {
                        tracing::error!(product = %id, error = %e, "cannot append a generation");
                        break;
                    }
                }
            }
            let _ = catch_up::<Product>(&rt, &id, &mut state, Until::Head).await;
            if let Some(reply) = msg.reply {
                let _ = reply.send(recorded);
            }
            state
        };
        ctx.wait(fut.into_actor(self).map(|state, act, ctx| {
            act.state = Some(state);
            ctx.notify(Decide);
        }));
    }
}

/// Appends a product's events with the version it folded as the expected version; `cause` (the
/// task that ran them) is their causation id when given.
async fn append(
    rt: &Runtime,
    id: &ProductId,
    state: &ProductState,
    events: &[DomainEvent],
    cause: Option<Uuid>,
) -> Result<(), StoreError> {
    let correlation = Uuid::now_v7();
    let causation = cause.unwrap_or(correlation);
    let mut batch = Vec::new();
    for e in events {
        let extra = state.district.iter().map(tag::district).collect();
        let ne = NewEvent::from_domain(e, Uuid::now_v7(), extra).map_err(|e| StoreError::invalid("payload", e))?;
        batch.push(ne.caused_by(correlation, causation));
    }
    // With the actors shared out among nodes, the append carries the shard's fencing token: a
    // node that lost the shard (paused past its lease, say) cannot append for the product.
    let stream = StreamId::product(id);
    let expected = ExpectedVersion::Exact(state.version);
    match rt.shards().fence::<Product>(id)? {
        Some(fence) => rt.store.append_fenced(&fence, &stream, expected, batch).await.map(|_| ()),
        None => rt.store.append(&stream, expected, batch).await.map(|_| ()),
    }
}
