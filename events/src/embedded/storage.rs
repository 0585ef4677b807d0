//! The small file-system seam under the embedded store, so tests can inject a failing fsync or
//! a full disk.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One segment file. Every method takes `&self`: readers `read_at` while the single writer
/// `write_at`s past the committed end, and neither needs a lock for it.
pub trait SegmentFile: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Makes written data durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// Opens segment files and makes directory entries durable.
pub trait Storage: Send + Sync + 'static {
    /// Opens a segment, creating it when `create` is set (and failing if it exists then).
    fn open(&self, path: &Path, create: bool, writable: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// fsyncs a directory, so that files created in it survive a crash.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

struct FsFile(File);

impl SegmentFile for FsFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for FsStorage {
    fn open(&self, path: &Path, create: bool, writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(writable).create_new(create).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A [`Storage`] over the real file system that fails on command: for tests of fail-stop
/// behaviour (a failed fsync, a full disk).
#[derive(Clone, Default)]
pub struct FaultyStorage {
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    fail_sync: AtomicBool,
    /// Bytes that may still be written before writes fail with ENOSPC; `u64::MAX` for no limit.
    space_left: AtomicU64,
    limited: AtomicBool,
}

impl FaultyStorage {
    /// Storage that behaves like [`FsStorage`] until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later fsync fail with EIO.
    pub fn fail_syncs(&self) {
        self.faults.fail_sync.store(true, Ordering::SeqCst);
    }

    /// Lets only `bytes` more bytes be written; then writes fail with ENOSPC after writing
    /// what fit (as a real full disk does).
    pub fn limit_space(&self, bytes: u64) {
        self.faults.space_left.store(bytes, Ordering::SeqCst);
        self.faults.limited.store(true, Ordering::SeqCst);
    }

    /// Space is freed: writes succeed again.
    pub fn free_space(&self) {
        self.faults.limited.store(false, Ordering::SeqCst);
    }
}

struct FaultyFile {
    inner: FsFile,
    faults: Arc<Faults>,
}

impl SegmentFile for FaultyFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.limited.load(Ordering::SeqCst) {
            let left = self.faults.space_left.load(Ordering::SeqCst);
            if (buf.len() as u64) > left {
                self.inner.write_at(&buf[..left as usize], offset)?;
                self.faults.space_left.store(0, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            self.faults.space_left.fetch_sub(buf.len() as u64, Ordering::SeqCst);
        }
        self.inner.write_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_at(buf, offset)
    }
    fn sync(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Storage for FaultyStorage {
    fn open(&self, path: &Path, create: bool, writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().read(true).write(writable).create_new(create).open(path)?;
        Ok(Arc::new(FaultyFile { inner: FsFile(file), faults: self.faults.clone() }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        FsStorage.sync_dir(dir)
    }
}
