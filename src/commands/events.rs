//! `mall events stats|tail|verify`: read-only looks at the log, which also work beside a
//! running writer (they read up to the last whole record).

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use mall_events::{EventStore, RecordedEvent, StoreError, subscribe_all};

use crate::cli::{EventsCommand, Exit};
use crate::store::{self, Access, StoreArgs, StoreKind};

/// Runs `mall events ...`.
pub async fn run(store_args: &StoreArgs, cmd: EventsCommand) -> Result<(), Exit> {
    let store = match store::open(store_args, Access::ReadOnly).await {
        Ok(s) => s,
        Err(e) if matches!(e.downcast_ref::<StoreError>(), Some(StoreError::Corruption { .. })) => {
            return Err(Exit { code: 3, error: e });
        }
        Err(e) => return Err(e.into()),
    };
    match cmd {
        EventsCommand::Stats { json } => stats(store.as_ref(), store_args, json).await,
        EventsCommand::Tail { from, follow, json } => tail(store, from, follow, json).await,
        EventsCommand::Verify { json } => verify(store.as_ref(), json).await,
    }
}

async fn stats(store: &dyn EventStore, args: &StoreArgs, json: bool) -> Result<(), Exit> {
    let s = store.stats().await?;
    if json {
        println!("{}", serde_json::to_string(&s).expect("stats serialize"));
    } else {
        let place = match args.store {
            StoreKind::Embedded => format!("embedded store in {}", args.data_dir.display()),
            StoreKind::Postgres => "PostgreSQL store".to_string(),
            StoreKind::Kurrentdb => "KurrentDB store".to_string(),
        };
        println!("{place}");
        println!("  events         {}", s.events);
        println!("  streams        {}", s.streams);
        println!("  last position  {}", s.last_position);
        println!("  bytes          {}", s.bytes);
    }
    Ok(())
}

/// One event as a human reads it.
pub fn human(e: &RecordedEvent) -> String {
    let data = match e.decode() {
        Ok(d) => serde_json::to_value(&d).map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("type");
            }
            v.to_string()
        }),
        Err(err) => Ok(format!("<undecodable: {err}>")),
    }
    .unwrap_or_default();
    format!(
        "#{:<8} {} {}@{} {} {}",
        e.position,
        e.recorded_at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        e.stream_id,
        e.stream_version,
        e.event_type,
        data
    )
}

async fn tail(store: Arc<dyn EventStore>, from: Option<u64>, follow: bool, json: bool) -> Result<(), Exit> {
    let last = store.stats().await?.last_position;
    let from = from.unwrap_or_else(|| last.saturating_sub(19).max(1));
    let mut out = std::io::stdout().lock();
    let print = |out: &mut std::io::StdoutLock, e: &RecordedEvent| -> std::io::Result<()> {
        if json { writeln!(out, "{}", e.to_json()) } else { writeln!(out, "{}", human(e)) }
    };
    if !follow {
        let mut next = from;
        loop {
            let batch = store.read_all(next, 1_000).await?;
            let Some(l) = batch.last() else { break };
            next = l.position + 1;
            for e in &batch {
                if print(&mut out, e).is_err() {
                    return Ok(()); // the reader went away (`| head`)
                }
            }
        }
        return Ok(());
    }
    drop(out);
    let mut sub = subscribe_all(store, from);
    loop {
        tokio::select! {
            e = sub.next() => {
                let Some(e) = e else { return Ok(()) };
                let e = e.context("the log feed failed")?;
                let mut out = std::io::stdout().lock();
                if print(&mut out, &e).and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn verify(store: &dyn EventStore, json: bool) -> Result<(), Exit> {
    // Opening already checked every frame, checksum, position and version; what is left is to
    // decode every payload, and to confirm the global order once more on every backend.
    let mut next = 1;
    let mut checked = 0u64;
    let mut undecodable = Vec::new();
    loop {
        let batch = match store.read_all(next, 5_000).await {
            Ok(b) => b,
            Err(e @ StoreError::Corruption { .. }) => return Err(Exit { code: 3, error: e.into() }),
            Err(e) => return Err(e.into()),
        };
        let Some(last) = batch.last() else { break };
        next = last.position + 1;
        for e in &batch {
            checked += 1;
            if e.position != checked {
                return Err(Exit {
                    code: 3,
                    error: anyhow::anyhow!("position {} follows position {}", e.position, checked - 1),
                });
            }
            if let Err(err) = e.decode() {
                undecodable.push(format!("position {} ({} in {}): {err}", e.position, e.event_type, e.stream_id));
            }
        }
    }
    if json {
        println!(
            "{}",
            serde_json::json!({ "ok": undecodable.is_empty(), "records": checked, "undecodable": undecodable })
        );
    } else {
        for u in &undecodable {
            println!("undecodable: {u}");
        }
    }
    if !undecodable.is_empty() {
        return Err(Exit {
            code: 3,
            error: anyhow::anyhow!("{} of {checked} records do not decode", undecodable.len()),
        });
    }
    if !json {
        println!("ok: {checked} records verified");
    }
    Ok(())
}
