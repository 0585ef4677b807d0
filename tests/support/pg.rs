//! A PostgreSQL backend for tests: a fresh database per test.

use std::sync::Arc;

use mall_events::EventStore;

/// The server tests use.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub struct Postgres {
    pub url: String,
}

impl Postgres {
    pub async fn new() -> Self {
        let name = format!("mall_test_{}", uuid::Uuid::new_v4().simple());
        let (client, conn) =
            tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await.expect("PostgreSQL is reachable");
        tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let base = admin_url();
        let url = match base.rfind('/') {
            Some(i) if base[..i].contains('@') || base[..i].ends_with(':') || base[..i].contains("//") => {
                format!("{}/{name}", &base[..i])
            }
            _ => format!("{base}/{name}"),
        };
        Self { url }
    }
}

#[async_trait::async_trait]
impl super::Backend for Postgres {
    async fn open(&mut self) -> Arc<dyn EventStore> {
        let mut config = mall_events::postgres::PgConfig::new(&self.url);
        config.limits.max_event_size = 64 * 1024;
        Arc::new(mall_events::postgres::PgStore::connect(config).await.unwrap())
    }
    fn name(&self) -> &'static str {
        "postgres"
    }
}
