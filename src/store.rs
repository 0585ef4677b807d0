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

/// The connections to PostgreSQL a `mall serve` node with `writers` writer connections opens at
/// most: the event store's pool, writers, listener and notifier; the read tables' pool and one
/// connection a projection; its leases'; and, while it rebuilds every projection, the rebuild's
/// lock, a shadow sink a projection, the live sink and the swap.
pub fn serve_connections(writers: usize) -> usize {
    let projections = crate::readside::projections().len();
    let store = mall_events::postgres::PgConfig::new("").pool_size + writers + 2;
    let read = crate::readside::READ_POOL + projections;
    let rebuild = 1 + projections + 2;
    store + read + 1 + rebuild
}

/// How many more connections PostgreSQL takes from this role to this database, and the limit
/// that says so: the server's `max_connections` less its superuser slots and every client's
/// connection, or the database's or the role's `CONNECTION LIMIT` less the connections under it
/// (the connection asking is not counted).
pub async fn connection_room(url: &str) -> anyhow::Result<(i64, &'static str)> {
    let client = mall_projections::postgres::connect(url).await?;
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::bigint - current_setting('superuser_reserved_connections')::bigint \
                    - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') + 1, \
                    (SELECT d.datconnlimit - (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid) + 1 \
                       FROM pg_database d WHERE d.datname = current_database() AND d.datconnlimit >= 0), \
                    (SELECT r.rolconnlimit - (SELECT count(*) FROM pg_stat_activity a WHERE a.usesysid = r.oid) + 1 \
                       FROM pg_roles r WHERE r.rolname = current_user AND r.rolconnlimit >= 0)",
            &[],
        )
        .await?;
    let limits = [
        (Some(row.get::<_, i64>(0)), "the server's max_connections"),
        (row.get::<_, Option<i64>>(1), "the database's CONNECTION LIMIT"),
        (row.get::<_, Option<i64>>(2), "the role's CONNECTION LIMIT"),
    ];
    let (room, which) = limits
        .into_iter()
        .filter_map(|(n, which)| n.map(|n| (n, which)))
        .min_by_key(|(n, _)| *n)
        .expect("the server's");
    Ok((room.max(0), which))
}

/// Says, as a node on PostgreSQL starts, when the database has less room for connections than
/// the node may open ([`serve_connections`]): under load, or while it rebuilds its read tables,
/// the node would otherwise meet "too many clients" at a random moment.
pub async fn warn_on_connection_room(url: &str, writers: usize) {
    let needed = serve_connections(writers);
    // A check, not a step of the start: it never holds the start up for long.
    let asked = tokio::time::timeout(std::time::Duration::from_secs(5), connection_room(url)).await;
    match asked.unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 5 s"))) {
        Ok((room, which)) if (room as usize) < needed => tracing::warn!(
            "PostgreSQL has room for {room} more connections ({which}) and this node may open up to {needed} \
             ({writers} writers): raise the limit, or lower --pg-writers (README, \"Several nodes\")"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "cannot ask PostgreSQL how many connections it takes"),
    }
}
