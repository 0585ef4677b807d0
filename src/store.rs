//! Choosing the event store: `--store embedded|postgres|kurrentdb`, `--data-dir`,
//! `--database-url`, or `MALL_STORE`, `MALL_DATA_DIR`, `DATABASE_URL`; embedded in `./mall-data`
//! by default.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore};

/// The backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// Segment files in a data directory (one writer process).
    Embedded,
    /// PostgreSQL.
    Postgres,
    /// KurrentDB (builds with `--features kurrentdb`).
    Kurrentdb,
}

/// The store flags every command shares.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Which event store to use.
    #[arg(long, global = true, env = "MALL_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// The embedded store's data directory.
    #[arg(long, global = true, env = "MALL_DATA_DIR", default_value = "mall-data")]
    pub data_dir: PathBuf,
    /// The PostgreSQL (or KurrentDB) connection URL.
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Writer connections to PostgreSQL in this process, each gathering the appends of its share
    /// of the streams into one transaction (one flush). Two measured best on a 2-core machine:
    /// more make smaller groups and more flushes (README, "Several nodes").
    #[arg(long, global = true, env = "MALL_PG_WRITERS", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pg_writers: u16,
}

/// Whether a command writes (and so needs the embedded store's single-writer lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Appends: takes the lock, repairs a torn tail.
    ReadWrite,
    /// Reads up to the last whole record; works beside a running writer.
    ReadOnly,
    /// Appends that take positions in the order they are handed to the store, whatever their
    /// streams (`mall import` keeps a file's order so): one writer connection on PostgreSQL.
    ReadWriteInOrder,
}

/// Opens the chosen store.
pub async fn open(args: &StoreArgs, access: Access) -> anyhow::Result<Arc<dyn EventStore>> {
    match args.store {
        StoreKind::Embedded => {
            let mut config = EmbeddedConfig::new(&args.data_dir);
            config.read_only = access == Access::ReadOnly;
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(config))
                .await
                .context("the store's opening task failed")??;
            Ok(Arc::new(store))
        }
        StoreKind::Postgres => {
            let url =
                args.database_url.as_deref().context("the postgres store needs --database-url or DATABASE_URL")?;
            let mut config = mall_events::postgres::PgConfig::new(url);
            config.writers = match access {
                Access::ReadWriteInOrder => 1,
                _ => usize::from(args.pg_writers),
            };
            let store = mall_events::postgres::PgStore::connect(config)
                .await
                .context("cannot open the PostgreSQL event store")?;
            Ok(Arc::new(store))
        }
        StoreKind::Kurrentdb => open_kurrent(args).await,
    }
}

#[cfg(feature = "kurrentdb")]
async fn open_kurrent(args: &StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    let url = args.database_url.as_deref().context("the kurrentdb store needs --database-url (a kurrentdb:// URL)")?;
    Ok(Arc::new(mall_events::kurrent::KurrentStore::connect(url).await?))
}

#[cfg(not(feature = "kurrentdb"))]
async fn open_kurrent(_: &StoreArgs) -> anyhow::Result<Arc<dyn EventStore>> {
    anyhow::bail!("this build has no KurrentDB support; rebuild with `cargo build --features kurrentdb`")
}

/// An [`EventStore`] that wraps another (`self.$inner`) and changes only its appends and
/// closing: the methods given, then every read handed to the inner store as it is.
macro_rules! wrapping_store {
    ($ty:ty, $inner:ident, { $($own:tt)* }) => {
        #[async_trait::async_trait]
        impl mall_events::EventStore for $ty {
            $($own)*

            async fn read_stream(
                &self,
                stream: &mall_events::StreamId,
                from_version: u64,
                direction: mall_events::Direction,
                limit: usize,
            ) -> Result<Vec<mall_events::RecordedEvent>, mall_events::StoreError> {
                self.$inner.read_stream(stream, from_version, direction, limit).await
            }

            async fn read_all(
                &self,
                from: mall_events::Position,
                limit: usize,
            ) -> Result<Vec<mall_events::RecordedEvent>, mall_events::StoreError> {
                self.$inner.read_all(from, limit).await
            }

            async fn read_by_tag(
                &self,
                tag: &str,
                from: mall_events::Position,
                limit: usize,
            ) -> Result<Vec<mall_events::RecordedEvent>, mall_events::StoreError> {
                self.$inner.read_by_tag(tag, from, limit).await
            }

            async fn read_events_by_id(
                &self,
                ids: &[uuid::Uuid],
            ) -> Result<Vec<mall_events::RecordedEvent>, mall_events::StoreError> {
                self.$inner.read_events_by_id(ids).await
            }

            async fn stream_version(&self, stream: &mall_events::StreamId) -> Result<u64, mall_events::StoreError> {
                self.$inner.stream_version(stream).await
            }

            async fn stats(&self) -> Result<mall_events::StoreStats, mall_events::StoreError> {
                self.$inner.stats().await
            }

            async fn wait_for_append(&self, after: mall_events::Position) {
                self.$inner.wait_for_append(after).await
            }

            fn health(&self) -> mall_events::StoreHealth {
                self.$inner.health()
            }
        }
    };
}
pub(crate) use wrapping_store;
