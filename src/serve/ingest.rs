//! Writes: catalog records (`POST /api/districts`, `POST /api/products`, `PUT /api/products/{id}`)
//! and learning signals (`POST /api/signals`).
//!
//! A signal batch is validated whole before anything is written: one bad item refuses the
//! batch, naming `signals[i].field`. Then every id is looked up: a known id with the same content
//! is a retry and is acknowledged without being stored again; a known id with different content
//! refuses the batch (422) before any of it is written. What is left is appended per product
//! stream, all streams at once (the embedded store's group commit makes them share fsyncs), and
//! acknowledged only when durable.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use mall_events::domain::{DomainEvent, RECORD_TYPES};
use mall_events::ids::{Position, ProductId};
use mall_events::records::{from_json, parse_typed};
use mall_events::{ExpectedVersion, NewEvent, StoreError, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::auth::Scope;
use super::error::ApiError;

/// The most signals in one batch.
pub const MAX_SIGNALS: usize = 10_000;
/// The largest catalog body.
pub const MAX_CATALOG_BODY: usize = 256 << 10;
/// The largest signal body (10,000 signals of about a kilobyte each, and then some).
pub const MAX_SIGNALS_BODY: usize = 16 << 20;

/// Reads a body of at most `limit` bytes within the server's body timeout (`--body-timeout`): a
/// body trickled a byte at a time must not hold a worker for ever.
pub async fn body(state: &AppState, mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let timeout = state.body_timeout;
    let read = async move {
        let mut buf = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| ApiError::invalid("body", format!("cannot read the body: {e}")))?;
            if buf.len() + chunk.len() > limit {
                return Err(ApiError::invalid("body", format!("the body is over the limit of {limit} bytes"))
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(timeout, read).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", timeout.as_secs()),
        ))
    })
}

/// Parses one catalog record of `record_type`; `type` may be left out, or must match.
fn catalog_record(bytes: &[u8], record_type: &str) -> Result<DomainEvent, ApiError> {
    Ok(parse_typed(record_type, Value::Object(catalog_fields(bytes, record_type)?))?)
}

/// The fields of a catalog body whose `type`, if given, must be `record_type`.
fn catalog_fields(bytes: &[u8], record_type: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    let mut fields: serde_json::Map<String, Value> = from_json(bytes)?;
    match fields.remove("type") {
        None => Ok(fields),
        Some(Value::String(t)) if t == record_type => Ok(fields),
        Some(_) => Err(ApiError::invalid("type", format!("must be {record_type:?} here (or left out)"))),
    }
}

/// Asks the catalog, then appends one catalog event with an id derived from its content (an
/// edit: a fresh id), so that a retried request is stored once; the catalog applies it as soon
/// as it is durable. A first record of its stream is appended only if the stream is still
/// empty, which settles a race between two requests that the catalog admitted at once: the loser
/// gets the catalog's answer, asked again.
async fn append_catalog(state: &AppState, event: &DomainEvent) -> Result<mall_events::AppendResult, ApiError> {
    let stream = event.stream_id();
    let payload = mall_events::codec::encode(event).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    let (id, expected) = match event {
        DomainEvent::ProductEdited(_) => (Uuid::now_v7(), ExpectedVersion::Any),
        _ => (crate::commands::import::catalog_event_id(&stream, &payload), ExpectedVersion::NoStream),
    };
    state.actors.rt.catalog.read().expect("catalog").decide(event, id)?;
    let ne = NewEvent::from_domain(event, id, Vec::new()).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    match state.store.append(&stream, expected, vec![ne]).await {
        Ok(r) => {
            state.actors.note(r.last_position, id, event);
            Ok(r)
        }
        Err(StoreError::WrongExpectedVersion { .. }) => {
            // Another record won the stream: the catalog learns it and answers.
            let first = state.store.read_stream(&stream, 1, mall_events::Direction::Forward, 1).await?;
            for e in &first {
                state.actors.note(
                    e.position,
                    e.event_id,
                    &e.decode().map_err(|e| ApiError::invalid("body", e.to_string()))?,
                );
            }
            state.actors.rt.catalog.read().expect("catalog").decide(event, id)?;
            Err(ApiError::new(StatusCode::CONFLICT, format!("{stream} was written by another request")))
        }
        Err(e) => Err(e.into()),
    }
}

/// 201 for a new record, 200 for a retry of a stored one.
fn created(r: &mall_events::AppendResult) -> actix_web::HttpResponseBuilder {
    HttpResponse::build(if r.deduplicated { StatusCode::OK } else { StatusCode::CREATED })
}

/// `POST /api/districts`.
pub async fn open_district(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let event = catalog_record(&body(&state, payload, MAX_CATALOG_BODY).await?, "district_opened")?;
    let DomainEvent::DistrictOpened(d) = &event else { unreachable!("parsed as district_opened") };
    let r = append_catalog(&state, &event).await?;
    Ok(created(&r).json(json!({"slug": d.slug, "position": r.last_position})))
}

/// `POST /api/products`.
pub async fn list_product(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let event = catalog_record(&body(&state, payload, MAX_CATALOG_BODY).await?, "product_listed")?;
    let DomainEvent::ProductListed(p) = &event else { unreachable!("parsed as product_listed") };
    let r = append_catalog(&state, &event).await?;
    Ok(created(&r).json(json!({"product_id": p.product_id, "position": r.last_position})))
}

/// `PUT /api/products/{id}`: any of the listed fields.
pub async fn edit_product(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let id = ProductId::parse(path.into_inner()).map_err(|e| ApiError::invalid("product_id", e.0))?;
    let bytes = body(&state, payload, MAX_CATALOG_BODY).await?;
    let mut fields = catalog_fields(&bytes, "product_edited")?;
    match fields.get("product_id") {
        None => {
            fields.insert("product_id".into(), Value::String(id.as_str().into()));
        }
        Some(Value::String(p)) if p == id.as_str() => {}
        Some(_) => return Err(ApiError::invalid("product_id", "must match the product in the URL (or be left out)")),
    }
    if let Some((k, _)) = fields.iter().find(|(_, v)| v.is_null()) {
        return Err(ApiError::invalid(k.clone(), "null is not a value: leave the field out to keep it as it is"));
    }
    if fields.len() == 1 {
        return Err(ApiError::invalid("body", "name at least one field to change"));
    }
    let event = parse_typed("product_edited", Value::Object(fields))?;
    let r = append_catalog(&state, &event).await.map_err(|e| match e.field.as_deref() {
        // The path names the product: an unknown one is not found.
        Some("product_id") if e.status == StatusCode::BAD_REQUEST => ApiError::not_found(e.message),
        _ => e,
    })?;
    Ok(HttpResponse::Ok().json(json!({"product_id": id, "position": r.last_position})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalBatch {
    signals: Vec<Value>,
}

/// One validated signal, ready to append.
struct Staged {
    index: usize,
    stream: StreamId,
    event: NewEvent,
}

/// `POST /api/signals`: `{"signals": [record, ...]}` → 202 `{"accepted", "duplicates", "position"}`.
pub async fn post_signals(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Ingest)?;
    let bytes = body(&state, payload, MAX_SIGNALS_BODY).await?;
    let batch: SignalBatch = from_json(&bytes)?;
    if batch.signals.is_empty() {
        return Err(ApiError::invalid("signals", "must hold at least one signal"));
    }
    if batch.signals.len() > MAX_SIGNALS {
        return Err(ApiError::invalid(
            "signals",
            format!("{} signals is over the limit of {MAX_SIGNALS} per batch", batch.signals.len()),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let staged = validate(&state, batch.signals)?;
    let (accepted, duplicates, position) = store_signals(&state, staged).await?;
    Ok(HttpResponse::Accepted().json(json!({"accepted": accepted, "duplicates": duplicates, "position": position})))
}

/// Parses and checks every signal; the first bad one refuses the batch.
fn validate(state: &AppState, signals: Vec<Value>) -> Result<Vec<Staged>, ApiError> {
    let signal_types = &RECORD_TYPES[5..];
    let catalog = state.actors.rt.catalog.read().expect("catalog");
    let mut staged = Vec::with_capacity(signals.len());
    let mut seen: HashMap<Uuid, usize> = HashMap::with_capacity(signals.len());
    for (i, value) in signals.into_iter().enumerate() {
        let at = |field: &str| format!("signals[{i}].{field}");
        let Value::Object(mut fields) = value else {
            return Err(ApiError::invalid(format!("signals[{i}]"), "must be an object"));
        };
        let ty = match fields.remove("type") {
            Some(Value::String(t)) if signal_types.contains(&t.as_str()) => t,
            Some(Value::String(t)) => {
                return Err(ApiError::invalid(
                    at("type"),
                    format!("{t:?} is not a signal; expected one of {}", signal_types.join(", ")),
                ));
            }
            Some(_) => return Err(ApiError::invalid(at("type"), "must be a string")),
            None => return Err(ApiError::invalid(at("type"), "missing field `type`")),
        };
        let event = parse_typed(&ty, Value::Object(fields)).map_err(|e| {
            ApiError::invalid(e.field.as_deref().map_or_else(|| format!("signals[{i}]"), at), e.message)
        })?;
        let id = event.signal_id().expect("a signal has an id");
        let admitted = catalog.decide(&event, id).map_err(|e| {
            let mut e = ApiError::from(e);
            e.field = e.field.map(|f| at(&f));
            e
        })?;
        let ne = NewEvent::from_domain(&event, id, admitted.extra_tags)
            .map_err(|e| ApiError::invalid(format!("signals[{i}]"), e.to_string()))?;
        // `seen` maps an id to its place in `staged`.
        if let Some(&k) = seen.get(&id) {
            let first: &Staged = &staged[k];
            if ne != first.event {
                let j = first.index;
                return Err(ApiError::invalid(at("id"), format!("the same id as signals[{j}] with different content"))
                    .with_status(StatusCode::UNPROCESSABLE_ENTITY));
            }
            continue;
        }
        seen.insert(id, staged.len());
        staged.push(Staged { index: i, stream: event.stream_id(), event: ne });
    }
    Ok(staged)
}

/// Stores what is not stored yet; returns (accepted, duplicates, the batch's last position).
async fn store_signals(state: &AppState, staged: Vec<Staged>) -> Result<(usize, usize, Position), ApiError> {
    let total = staged.len();
    let ids: Vec<Uuid> = staged.iter().map(|s| s.event.event_id).collect();
    let known: HashMap<Uuid, mall_events::RecordedEvent> =
        state.store.read_events_by_id(&ids).await?.into_iter().map(|e| (e.event_id, e)).collect();
    let mut position: Position = 0;
    let mut groups: Vec<(StreamId, Vec<Staged>)> = Vec::new();
    let mut group_of: HashMap<StreamId, usize> = HashMap::new();
    let mut duplicates = 0;
    for s in staged {
        if let Some(k) = known.get(&s.event.event_id) {
            if k.stream_id != s.stream || !s.event.same_as(k) {
                return Err(ApiError::invalid(
                    format!("signals[{}].id", s.index),
                    format!("id {} is already stored with different content", s.event.event_id),
                )
                .with_status(StatusCode::UNPROCESSABLE_ENTITY));
            }
            duplicates += 1;
            position = position.max(k.position);
            continue;
        }
        let g = *group_of.entry(s.stream.clone()).or_insert_with(|| {
            groups.push((s.stream.clone(), Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(s);
    }
    // Each group answers (its last position, how many of it were already stored).
    let appends = groups.into_iter().map(|(stream, group)| async move {
        let events: Vec<NewEvent> = group.iter().map(|s| s.event.clone()).collect();
        let n = events.len();
        match state.store.append(&stream, ExpectedVersion::Any, events).await {
            Ok(r) => Ok((r.last_position, if r.deduplicated { n } else { 0 })),
            // Raced by another request carrying some of the same ids: store one at a time, so
            // that each is either a retry (counted as a duplicate) or new; a real conflict names
            // its signal.
            Err(StoreError::IdConflict { .. }) => {
                let (mut last, mut again) = (0, 0);
                for s in group {
                    match state.store.append(&stream, ExpectedVersion::Any, vec![s.event]).await {
                        Ok(r) => {
                            last = last.max(r.last_position);
                            again += r.deduplicated as usize;
                        }
                        Err(e @ StoreError::IdConflict { .. }) => {
                            return Err(ApiError::invalid(format!("signals[{}].id", s.index), e.to_string())
                                .with_status(StatusCode::UNPROCESSABLE_ENTITY));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok((last, again))
            }
            Err(e @ StoreError::EventTooLarge { event_id, .. }) => {
                let at = group.iter().find(|s| s.event.event_id == event_id).map(|s| s.index);
                let field = at.map_or("signals".to_string(), |i| format!("signals[{i}]"));
                Err(ApiError::invalid(field, e.to_string()).with_status(StatusCode::PAYLOAD_TOO_LARGE))
            }
            Err(e) => Err(ApiError::from(e)),
        }
    });
    for r in futures_util::future::join_all(appends).await {
        let (last, again) = r?;
        position = position.max(last);
        duplicates += again;
    }
    Ok((total, duplicates, position))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NudgeBody {
    product_id: String,
}

/// `POST /api/autonomous/products` `{"product_id"}`: queues a look at the product (its actor
/// decides from its state) at an admin's priority, through the task queue; answers with the
/// task id (an earlier queued look at the same product is the same task).
pub async fn nudge_product(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    state.tokens.check(&req, Scope::Admin)?;
    let body: NudgeBody = from_json(&body(&state, payload, MAX_CATALOG_BODY).await?)?;
    let id = ProductId::parse(body.product_id).map_err(|e| ApiError::invalid("product_id", e.0))?;
    if !state.actors.rt.listed(id.as_str()) {
        return Err(ApiError::not_found(format!("no product {id}")));
    }
    let request = mall_actors::autonomous::scheduler::Request {
        system: "product_intelligence".into(),
        subject: format!("product:{id}"),
        action: "nudge".into(),
        priority: mall_actors::autonomous::priority::ADMIN,
        reason: "an admin asked for a look now".into(),
        metrics: Default::default(),
        generations: 0,
    };
    let tasks = state.core.queue(vec![request]).await?;
    Ok(HttpResponse::Accepted().json(json!({"product_id": id, "tasks": tasks})))
}
