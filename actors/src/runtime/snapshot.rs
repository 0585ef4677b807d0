//! Snapshots: an actor's folded state saved every N events, so that activation reads the
//! snapshot and only the events after it. A snapshot is a cache of the log, never the truth:
//! one that is missing, torn or from an older state shape is ignored and the stream replayed.

use std::path::PathBuf;

use serde::{de::DeserializeOwned, Serialize};

/// The shape version of snapshots; bump it when a state struct changes, and old snapshots are
/// ignored (rebuilt from the log).
pub const FORMAT: u8 = 1;

/// Where snapshots are kept.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The saved bytes under `key`, if any.
    fn load(&self, key: &str) -> Option<Vec<u8>>;
    /// Saves `bytes` under `key`, replacing what was there.
    fn save(&self, key: &str, bytes: &[u8]);
}

/// Snapshots as files in a directory, each written to a temporary file and renamed into place,
/// so a reader sees a whole old snapshot or a whole new one. They are not fsynced: losing one in
/// a crash only costs a longer replay.
pub struct FsSnapshots {
    dir: PathBuf,
}

impl FsSnapshots {
    /// Keeps snapshots in `dir`, creating it.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, key: &str) -> PathBuf {
        let safe: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '~' }).collect();
        // Keys that differ only in replaced characters get distinct names through their hash.
        self.dir.join(format!("{safe}.{:016x}.snap", crate::product::text_hash(key)))
    }
}

impl SnapshotStore for FsSnapshots {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }

    fn save(&self, key: &str, bytes: &[u8]) {
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, &path)) {
            tracing::warn!(key, error = %e, "cannot save a snapshot");
        }
    }
}

/// Snapshots in memory (tests, benches).
#[derive(Default)]
pub struct MemorySnapshots(std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>);

impl SnapshotStore for MemorySnapshots {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        self.0.lock().expect("snapshot map").get(key).cloned()
    }

    fn save(&self, key: &str, bytes: &[u8]) {
        self.0.lock().expect("snapshot map").insert(key.to_string(), bytes.to_vec());
    }
}

/// Encodes a state with the format byte in front.
pub fn encode<T: Serialize>(state: &T) -> Option<Vec<u8>> {
    let mut v = vec![FORMAT];
    rmp_serde::encode::write_named(&mut v, state).ok()?;
    Some(v)
}

/// Decodes a state saved by [`encode`] with the current format; `None` otherwise.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => rmp_serde::from_slice(rest).ok(),
        _ => None,
    }
}
