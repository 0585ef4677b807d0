//! `mall debug ...` (hidden): helpers for the crash tests.

use std::io::Write;

use clap::Subcommand;
use mall_events::{ExpectedVersion, NewEvent, StreamId};
use uuid::Uuid;

use crate::cli::Exit;
use crate::store::{self, Access, StoreArgs};

/// Hidden test helpers.
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Append forever from several writers; print `ack <position> <event id> <stream> <version>`
    /// for each acknowledged (durable) event, until killed.
    AppendLoad {
        /// Concurrent writers.
        #[arg(long, default_value_t = 4)]
        writers: usize,
        /// Stop after this many events per writer (default: never).
        #[arg(long)]
        limit: Option<u64>,
    },
}

/// Runs `mall debug ...`.
pub async fn run(store_args: &StoreArgs, cmd: DebugCommand) -> Result<(), Exit> {
    match cmd {
        DebugCommand::AppendLoad { writers, limit } => {
            let store = store::open(store_args, Access::ReadWrite).await?;
            let mut tasks = Vec::new();
            for w in 0..writers {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    let stream = StreamId::parse(format!("product-load{w}")).expect("valid");
                    let mut i = 0u64;
                    while limit.is_none_or(|l| i < l) {
                        // Batches of 1 to 3 events of varying size, so that kills land anywhere.
                        let n = 1 + (i % 3) as usize;
                        let events: Vec<NewEvent> = (0..n)
                            .map(|k| NewEvent {
                                event_id: Uuid::now_v7(),
                                event_type: "load".into(),
                                schema_version: 1,
                                tags: vec![format!("writer:{w}")],
                                correlation_id: None,
                                causation_id: None,
                                payload: vec![
                                    (i as u8).wrapping_add(k as u8);
                                    20 + ((i * 37 + k as u64) % 400) as usize
                                ],
                            })
                            .collect();
                        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
                        let r = store.append(&stream, ExpectedVersion::Any, events).await?;
                        let mut out = std::io::stdout().lock();
                        for (k, id) in ids.iter().enumerate() {
                            let v = r.stream_version - (n - 1 - k) as u64;
                            let _ = writeln!(out, "ack {} {id} {stream} {v}", r.first_position + k as u64);
                        }
                        let _ = out.flush();
                        i += 1;
                    }
                    Ok::<_, mall_events::StoreError>(())
                }));
            }
            for t in tasks {
                t.await.map_err(anyhow::Error::from)??;
            }
            store.close().await;
            Ok(())
        }
    }
}
