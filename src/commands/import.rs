//! `mall import FILE`: validated NDJSON records appended to their streams in batches, in the
//! file's order.
//!
//! Re-importing a file adds nothing twice: a signal's event id is its client-chosen `id`, and a
//! catalog record's event id is derived from its stream, its content and how many identical
//! records came before it in the file, so the store recognizes a second import as a retry. A bad
//! line stops the import with its number and reason, after everything before it is durable.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use mall_actors::catalog::Catalog;
use mall_events::domain::DomainEvent;
use mall_events::records::parse_record;
use mall_events::{Direction, EventStore, ExpectedVersion, NewEvent, StoreError, StreamId};
use uuid::Uuid;

use crate::cli::{Exit, ImportArgs};
use crate::store::{self, Access, StoreArgs};

/// The namespace of catalog event ids derived from content.
const CATALOG_NAMESPACE: Uuid = Uuid::from_u128(0x6d61_6c6c_2d63_6174_616c_6f67_2d76_0001);
/// The longest line accepted, in bytes.
const MAX_LINE: usize = 1 << 20;

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    /// Records read.
    pub records: u64,
    /// Events newly appended.
    pub appended: u64,
    /// Events that were already in the log (an earlier import of the same records).
    pub already_stored: u64,
}

/// Runs `mall import`.
pub async fn run(store_args: &StoreArgs, args: &ImportArgs) -> Result<(), Exit> {
    let (reader, size): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = std::fs::File::open(&args.file).with_context(|| format!("cannot open {}", args.file.display()))?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let store = store::open(store_args, Access::ReadWriteInOrder).await?;
    let progress = match size {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {bytes}/{total_bytes} {msg} ({eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner()
            .with_style(ProgressStyle::with_template("{spinner} {bytes} {msg}").expect("a valid template")),
    };
    let started = Instant::now();
    let result = import(store.clone(), reader, args.batch as usize, &progress).await;
    progress.finish_and_clear();
    store.close().await;
    let report = result?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {} records from {}: {} events appended, {} already stored ({:.1}s, {:.0} events/s)",
        report.records,
        display(&args.file),
        report.appended,
        report.already_stored,
        secs,
        report.records as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn display(p: &Path) -> String {
    if p.as_os_str() == "-" { "standard input".into() } else { p.display().to_string() }
}

/// Records staged but not yet in the log are applied to the importer's catalog at positions past
/// any the log can have reached, in the file's order.
const STAGED: u64 = 1 << 62;

struct Pending {
    line: u64,
    stream: StreamId,
    event: NewEvent,
}

/// The import state: the catalog as known so far (the streams the file named, read from the
/// log, and what the file added) and the events not yet appended.
struct Importer {
    store: Arc<dyn EventStore>,
    catalog: Catalog,
    /// The catalog streams already read from the log.
    read: HashSet<StreamId>,
    seen: HashMap<Uuid, u32>,
    pending: Vec<Pending>,
    report: ImportReport,
}

/// Reads records from `reader` and appends them, `batch` events per round.
pub async fn import(
    store: Arc<dyn EventStore>,
    reader: impl Read,
    batch: usize,
    progress: &ProgressBar,
) -> anyhow::Result<ImportReport> {
    let mut importer = Importer {
        store,
        catalog: Catalog::default(),
        read: HashSet::new(),
        seen: HashMap::new(),
        pending: Vec::new(),
        report: ImportReport::default(),
    };
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let mut line = Vec::new();
    let mut number = 0u64;
    let started = Instant::now();
    loop {
        line.clear();
        let n =
            (&mut reader).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).context("cannot read the input")?;
        if n == 0 {
            break;
        }
        number += 1;
        progress.inc(n as u64);
        if line.len() > MAX_LINE {
            importer.flush().await?;
            return Err(anyhow!("line {number}: longer than {MAX_LINE} bytes"));
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let staged = match parse_record(&line) {
            Ok(record) => importer.stage(number, record).await,
            Err(e) => Err(anyhow!("{e}")),
        };
        if let Err(e) = staged {
            // Everything before the bad line is made durable before the import stops.
            importer.flush().await?;
            return Err(anyhow!("line {number}: {e}"));
        }
        importer.report.records += 1;
        if importer.pending.len() >= batch {
            importer.flush().await?;
            let rate = importer.report.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
            progress.set_message(format!("{} records, {rate:.0}/s", importer.report.records));
        }
    }
    importer.flush().await?;
    Ok(importer.report)
}

/// The event id of the first occurrence of a catalog record, derived from its stream and
/// content: the same record imported or posted twice is stored once.
pub fn catalog_event_id(stream: &StreamId, payload: &[u8]) -> Uuid {
    let mut name = Vec::with_capacity(stream.as_str().len() + payload.len() + 1);
    name.extend_from_slice(stream.as_str().as_bytes());
    name.push(0);
    name.extend_from_slice(payload);
    Uuid::new_v5(&CATALOG_NAMESPACE, &name)
}

impl Importer {
    /// The event id of a catalog record: derived from its stream, content and occurrence.
    fn catalog_id(&mut self, stream: &StreamId, payload: &[u8]) -> Uuid {
        let base = catalog_event_id(stream, payload);
        let k = self.seen.entry(base).or_insert(0);
        *k += 1;
        if *k == 1 { base } else { Uuid::new_v5(&base, &k.to_le_bytes()) }
    }

    /// Reads a catalog stream into the catalog, once: a district's opening, or a product's
    /// listing and edits.
    async fn read_stream(&mut self, stream: StreamId) -> anyhow::Result<()> {
        if !self.read.insert(stream.clone()) {
            return Ok(());
        }
        let limit = if stream.category() == "district" { 1 } else { usize::MAX };
        for e in self.store.read_stream(&stream, 1, Direction::Forward, limit).await? {
            if Catalog::concerns(&e.event_type) {
                self.catalog.apply(e.position, e.event_id, &e.decode()?);
            }
        }
        Ok(())
    }

    /// Checks a record against the catalog (the streams it names read from the log first) and
    /// queues its event.
    async fn stage(&mut self, line: u64, record: DomainEvent) -> anyhow::Result<()> {
        let stream = record.stream_id();
        let named: Vec<StreamId> = match &record {
            DomainEvent::DistrictOpened(d) => vec![StreamId::district(&d.slug)],
            DomainEvent::ProductListed(p) => vec![StreamId::district(&p.district), stream.clone()],
            DomainEvent::ProductEdited(e) => {
                e.district.iter().map(StreamId::district).chain([stream.clone()]).collect()
            }
            other => other.product_id().map(|_| stream.clone()).into_iter().collect(),
        };
        for s in named {
            self.read_stream(s).await?;
        }
        let event_id = match &record {
            signal if signal.is_signal() => signal.signal_id().expect("a signal has an id"),
            catalog => self.catalog_id(&stream, &mall_events::codec::encode(catalog)?),
        };
        let admitted = self.catalog.decide(&record, event_id)?;
        self.catalog.apply(STAGED + line, event_id, &record);
        let event = NewEvent::from_domain(&record, event_id, admitted.extra_tags)?;
        self.pending.push(Pending { line, stream, event });
        Ok(())
    }

    /// Appends everything queued, keeping the file's order in the log: each run of consecutive
    /// records of one stream is one append, and every append is handed to the store in the
    /// file's order before any is awaited — a backend takes appends in the order they reach it
    /// (the embedded writer's channel, PostgreSQL's one writer queue when opened
    /// [`Access::ReadWriteInOrder`], both first come first served),
    /// so the log's order is the file's while the store's group commit still shares fsyncs
    /// among them.
    async fn flush(&mut self) -> anyhow::Result<()> {
        use futures_util::future::{MaybeDone, maybe_done, poll_fn};
        use std::future::Future;
        let mut runs: Vec<(StreamId, Vec<Pending>)> = Vec::new();
        for p in self.pending.drain(..) {
            match runs.last_mut() {
                Some((s, run)) if *s == p.stream => run.push(p),
                _ => runs.push((p.stream.clone(), vec![p])),
            }
        }
        let mut appends: Vec<std::pin::Pin<Box<MaybeDone<_>>>> = runs
            .into_iter()
            // Unconstrained: tokio's cooperative budget would otherwise make a later first poll
            // return early (after about 128 channel operations in one poll) and queue its
            // append out of order.
            .map(|(stream, run)| {
                Box::pin(maybe_done(tokio::task::unconstrained(append_stream(self.store.clone(), stream, run))))
            })
            .collect();
        // One poll each, in order: every append is queued in the store before any is awaited.
        poll_fn(|cx| {
            for a in appends.iter_mut() {
                let _ = a.as_mut().poll(cx);
            }
            std::task::Poll::Ready(())
        })
        .await;
        futures_util::future::join_all(appends.iter_mut().map(|a| a.as_mut())).await;
        let mut first_error = None;
        for a in appends.iter_mut() {
            match a.as_mut().take_output().expect("every append finished") {
                Ok((appended, stored)) => {
                    self.report.appended += appended;
                    self.report.already_stored += stored;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Appends one stream's queued events; returns (appended, already stored).
async fn append_stream(
    store: Arc<dyn EventStore>,
    stream: StreamId,
    batch: Vec<Pending>,
) -> anyhow::Result<(u64, u64)> {
    let events: Vec<NewEvent> = batch.iter().map(|p| p.event.clone()).collect();
    let n = events.len() as u64;
    match store.append(&stream, ExpectedVersion::Any, events).await {
        Ok(r) if r.deduplicated => Ok((0, n)),
        Ok(_) => Ok((n, 0)),
        // Part of the batch was stored by an earlier, interrupted import: go one by one.
        Err(StoreError::IdConflict { .. }) => {
            let (mut appended, mut stored) = (0, 0);
            for p in batch {
                match store.append(&stream, ExpectedVersion::Any, vec![p.event.clone()]).await {
                    Ok(r) if r.deduplicated => stored += 1,
                    Ok(_) => appended += 1,
                    Err(StoreError::IdConflict { event_id, reason }) => {
                        return Err(anyhow!("line {}: id {event_id} is already stored {reason}", p.line));
                    }
                    Err(e) => return Err(anyhow!("line {}: {e}", p.line)),
                }
            }
            Ok((appended, stored))
        }
        Err(e) => Err(anyhow!("line {}: {e}", batch[0].line)),
    }
}
