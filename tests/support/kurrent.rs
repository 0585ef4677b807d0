//! KurrentDB for tests: runs only when `KURRENTDB_URL` points at an empty, throwaway server
//! (run with `--test-threads=1`: the tests share its `$all`).

use std::sync::Arc;

use mall_events::EventStore;

pub struct Kurrent {
    url: String,
}

impl Kurrent {
    /// The backend, or `None` (saying so) when no server is configured.
    pub fn from_env() -> Option<Self> {
        match std::env::var("KURRENTDB_URL") {
            Ok(url) => Some(Self { url }),
            Err(_) => {
                println!("SKIPPED: KurrentDB conformance (set KURRENTDB_URL to an empty KurrentDB server to run it)");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Backend for Kurrent {
    async fn open(&mut self) -> Arc<dyn EventStore> {
        Arc::new(mall_events::kurrent::KurrentStore::connect(&self.url).await.unwrap())
    }
    fn name(&self) -> &'static str {
        "kurrentdb"
    }
    fn gap_free(&self) -> bool {
        false
    }
}
