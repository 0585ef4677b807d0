//! Snapshots: an actor's folded state saved every N events, so that activation reads the
//! snapshot and only the events after it. A snapshot is a cache of the log, never the truth:
//! one that is missing, torn or from an older state shape is ignored and the stream replayed.
//! A state names the last event it folded (its position, and its stream version or tag), and a
//! snapshot whose last event is not in the log — another database behind the same data
//! directory, a log restored from an older backup — is ignored too (see `entity::load`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Serialize, de::DeserializeOwned};

/// The shape version of snapshots; bump it when a state struct changes, and old snapshots are
/// ignored (rebuilt from the log).
pub const FORMAT: u8 = 1;

/// Where snapshots are kept.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The saved bytes under `key`, if any.
    fn load(&self, key: &str) -> Option<Vec<u8>>;
    /// Saves `bytes` under `key`, replacing what was there (possibly later, in the background).
    fn save(&self, key: &str, bytes: &[u8]);
    /// Waits until every save so far is written.
    fn flush(&self) {}
}

/// Snapshots as files in a directory, written by one background thread: `save` only records
/// the newest bytes per key (a burst of saves of one actor costs one write), and actors never
/// wait on the file system. Each file is the snapshot with its CRC-32C in front, written in
/// place: a torn file fails its check and is ignored. Nothing is fsynced: a snapshot lost in a
/// crash only costs a longer replay from the log.
pub struct FsSnapshots {
    dir: PathBuf,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<String, Vec<u8>>>,
    wake: Condvar,
    /// Set when the writer must drain and stop.
    stop: std::sync::atomic::AtomicBool,
    /// Notified each time the writer has drained what it took.
    drained: Condvar,
}

impl FsSnapshots {
    /// Keeps snapshots in `dir`, creating it.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let shared = Arc::new(Shared::default());
        let (d, sh) = (dir.clone(), shared.clone());
        let writer = std::thread::Builder::new().name("mall-snapshots".into()).spawn(move || write_loop(&d, &sh))?;
        Ok(Self { dir, shared, writer: Some(writer) })
    }

    fn path(dir: &Path, key: &str) -> PathBuf {
        let safe: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '~' }).collect();
        // Keys that differ only in replaced characters get distinct names through their hash.
        dir.join(format!("{safe}.{:016x}.snap", crate::product::text_hash(key)))
    }
}

fn write_loop(dir: &Path, shared: &Shared) {
    loop {
        let batch = {
            let mut pending = shared.pending.lock().expect("snapshots");
            while pending.is_empty() && !shared.stop.load(std::sync::atomic::Ordering::Acquire) {
                pending = shared.wake.wait(pending).expect("snapshots");
            }
            if pending.is_empty() {
                return;
            }
            std::mem::take(&mut *pending)
        };
        for (key, bytes) in batch {
            let mut framed = Vec::with_capacity(bytes.len() + 4);
            framed.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
            framed.extend_from_slice(&bytes);
            if let Err(e) = std::fs::write(FsSnapshots::path(dir, &key), &framed) {
                tracing::warn!(key, error = %e, "cannot save a snapshot");
            }
        }
        let _guard = shared.pending.lock().expect("snapshots");
        shared.drained.notify_all();
    }
}

impl SnapshotStore for FsSnapshots {
    fn load(&self, key: &str) -> Option<Vec<u8>> {
        if let Some(b) = self.shared.pending.lock().expect("snapshots").get(key) {
            return Some(b.clone());
        }
        let framed = std::fs::read(Self::path(&self.dir, key)).ok()?;
        let (crc, bytes) = framed.split_at_checked(4)?;
        (crc32c::crc32c(bytes).to_le_bytes() == crc).then(|| bytes.to_vec())
    }

    fn save(&self, key: &str, bytes: &[u8]) {
        self.shared.pending.lock().expect("snapshots").insert(key.to_string(), bytes.to_vec());
        self.shared.wake.notify_one();
    }

    fn flush(&self) {
        let mut pending = self.shared.pending.lock().expect("snapshots");
        while !pending.is_empty() {
            self.shared.wake.notify_one();
            pending =
                self.shared.drained.wait_timeout(pending, std::time::Duration::from_millis(100)).expect("snapshots").0;
        }
    }
}

impl Drop for FsSnapshots {
    fn drop(&mut self) {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Release);
        self.shared.wake.notify_all();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_written_in_the_background_and_a_torn_one_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let snaps = FsSnapshots::open(dir.path()).unwrap();
        snaps.save("product-p1", b"first");
        snaps.save("product-p1", b"second");
        assert_eq!(snaps.load("product-p1").as_deref(), Some(&b"second"[..]), "a pending save is read back");
        snaps.flush();
        drop(snaps);
        let snaps = FsSnapshots::open(dir.path()).unwrap();
        assert_eq!(snaps.load("product-p1").as_deref(), Some(&b"second"[..]));
        // Cut the file short, as a crash in the middle of the write would.
        let path = FsSnapshots::path(dir.path(), "product-p1");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert_eq!(snaps.load("product-p1"), None, "a torn snapshot is ignored (the log is replayed)");
        assert_eq!(snaps.load("product-none"), None);
    }
}
