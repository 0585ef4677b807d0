//! Crash and corruption tests for the embedded store: SIGKILL during appends, torn tails cut at
//! every byte, flipped bytes and zeroed blocks in sealed segments, failing fsyncs, a full disk,
//! and a second writer process.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use mall_events::embedded::frame::{Frame, read_frame};
use mall_events::embedded::storage::FaultyStorage;
use mall_events::{EmbeddedConfig, EmbeddedStore, EventStore, ExpectedVersion, StoreError};
use rand::{Rng, SeedableRng};
use support::{event, stream};
use uuid::Uuid;

const MALL: &str = env!("CARGO_BIN_EXE_mall");

fn config(dir: &Path, segment_size: u64) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir);
    c.segment_size = segment_size;
    c
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    s.sort();
    s
}

/// The (offset, length) of every record of a segment file.
fn record_spans(path: &Path) -> Vec<(usize, usize)> {
    let buf = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut spans = Vec::new();
    while at < buf.len() {
        match read_frame(&buf[at..], 1 << 24) {
            Frame::Valid { len, .. } => {
                spans.push((at, len));
                at += len;
            }
            _ => break,
        }
    }
    spans
}

#[derive(Debug, Clone, PartialEq)]
struct Ack {
    position: u64,
    id: Uuid,
    stream: String,
    version: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_at_random_moments() {
    let seed: u64 = std::env::var("MALL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let kills: usize = std::env::var("MALL_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(12);
    println!("crash test seed {seed} ({kills} kills); rerun with MALL_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..kills {
        let mut child = Command::new(MALL)
            .args(["--data-dir", dir.path().to_str().unwrap(), "debug", "append-load", "--writers", "4"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // Only whole lines count: a line cut by the kill was never fully reported.
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.ends_with('\n') {
                    lines.push(line.trim_end().to_string());
                }
                line.clear();
            }
            lines
        });
        std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for l in lines {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(f[0], "ack", "{l}");
            acked.push(Ack {
                position: f[1].parse().unwrap(),
                id: f[2].parse().unwrap(),
                stream: f[3].into(),
                version: f[4].parse().unwrap(),
            });
        }
        // Reopen (cutting any torn tail) and check every acknowledged event, in order.
        let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
        let all = store.read_all(1, usize::MAX).await.unwrap();
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.position, i as u64 + 1, "seed {seed} round {round}: positions are gap-free");
        }
        let by_id: HashMap<Uuid, &mall_events::RecordedEvent> = all.iter().map(|e| (e.event_id, e)).collect();
        for a in &acked {
            let e = by_id.get(&a.id).unwrap_or_else(|| panic!("seed {seed} round {round}: acknowledged {a:?} is lost"));
            assert_eq!(
                (e.position, e.stream_id.as_str(), e.stream_version),
                (a.position, a.stream.as_str(), a.version),
                "seed {seed}"
            );
        }
        store.verify().unwrap();
        store.close().await;
    }
    assert!(acked.len() > 100, "seed {seed}: the writer made progress ({} acks)", acked.len());
}

#[tokio::test]
async fn a_tail_cut_at_every_byte_offset_recovers_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path(), 1 << 20)).unwrap();
    for i in 0..12u8 {
        store
            .append(
                &stream(&format!("product-{}", i % 3)),
                ExpectedVersion::Any,
                vec![event("e", &vec![i; 30 + i as usize * 7])],
            )
            .await
            .unwrap();
    }
    let original = store.read_all(1, 100).await.unwrap();
    store.close().await;
    drop(store);
    let seg = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let spans = record_spans(&seg);
    assert_eq!(spans.len(), 12);
    let first_cut = spans[spans.len() - 3].0; // the last three records, byte by byte
    // Each cut twice: the file ends at the cut, or (as with space allocated ahead of the
    // writer) the cut is followed by zeros.
    for (cut, padded) in (first_cut..=bytes.len()).flat_map(|c| [(c, false), (c, true)]) {
        let copy = tempfile::tempdir().unwrap();
        let file = copy.path().join(seg.file_name().unwrap());
        let mut content = bytes[..cut].to_vec();
        if padded {
            content.resize(bytes.len() + 4096, 0);
        }
        std::fs::write(&file, &content).unwrap();
        let whole = spans.iter().filter(|(o, l)| o + l <= cut).count();
        let store = EmbeddedStore::open(config(copy.path(), 1 << 20)).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let all = store.read_all(1, 100).await.unwrap();
        assert_eq!(all, original[..whole], "cut at {cut} (padded: {padded})");
        let boundary = spans.get(whole.wrapping_sub(1)).map_or(0, |(o, l)| o + l);
        if !padded {
            let len = std::fs::metadata(&file).unwrap().len() as usize;
            assert_eq!(len, boundary, "cut at {cut}: the torn tail is truncated");
        }
        // And the store goes on appending after the repair.
        let r = store.append(&stream("product-9"), ExpectedVersion::Any, vec![event("e", b"after")]).await.unwrap();
        assert_eq!(r.first_position, whole as u64 + 1);
        store.close().await;
        drop(store);
        let store = EmbeddedStore::open(config(copy.path(), 1 << 20)).unwrap();
        assert_eq!(store.read_all(1, 100).await.unwrap().len(), whole + 1, "cut at {cut} (padded: {padded}), reopened");
        store.close().await;
    }
}

/// A store with several sealed segments of equal-size records in one stream.
async fn sealed_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path(), 16 * 1024)).unwrap();
    for i in 0..120u32 {
        store
            .append(&stream("product-sealed"), ExpectedVersion::Any, vec![event("e", &[(i % 251) as u8; 400])])
            .await
            .unwrap();
    }
    store.close().await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    (dir, segs[0].clone())
}

fn expect_corruption(dir: &Path, file: &Path, offset: u64) {
    match EmbeddedStore::open(EmbeddedConfig::new(dir)) {
        Err(StoreError::Corruption { file: f, offset: o, .. }) => {
            assert_eq!((f.as_path(), o), (file, offset), "open names the file and the offset");
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("a corrupt store opened"),
    }
    let out = Command::new(MALL).args(["--data-dir", dir.to_str().unwrap(), "events", "verify"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "verify exits 3: {stderr}");
    assert!(stderr.contains(&file.display().to_string()) && stderr.contains(&format!("offset {offset}")), "{stderr}");
    assert!(stderr.starts_with("mall: "), "{stderr}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_sealed_segment_fails_open_with_the_file_and_offset() {
    let (dir, seg) = sealed_store().await;
    let spans = record_spans(&seg);
    let (offset, len) = spans[5];
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[offset + len / 2] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();
    expect_corruption(dir.path(), &seg, offset as u64);
}

#[tokio::test]
async fn a_zeroed_4k_block_in_a_sealed_segment_fails_open_with_the_file_and_offset() {
    let (dir, seg) = sealed_store().await;
    let spans = record_spans(&seg);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[4096..8192].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let (offset, _) = *spans.iter().find(|(o, l)| o + l > 4096).unwrap();
    expect_corruption(dir.path(), &seg, offset as u64);
}

#[tokio::test]
async fn a_valid_record_at_the_wrong_place_fails_open() {
    let (dir, seg) = sealed_store().await;
    let spans = record_spans(&seg);
    let mut bytes = std::fs::read(&seg).unwrap();
    let ((a, la), (b, lb)) = (spans[2], spans[3]);
    assert_eq!(la, lb, "records of equal size");
    let copy = bytes[a..a + la].to_vec();
    bytes[b..b + lb].copy_from_slice(&copy);
    std::fs::write(&seg, &bytes).unwrap();
    expect_corruption(dir.path(), &seg, b as u64);
}

#[tokio::test]
async fn corruption_inside_the_active_segment_is_reported_not_cut() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(config(dir.path(), 1 << 20)).unwrap();
    for i in 0..10u8 {
        store.append(&stream("product-a"), ExpectedVersion::Any, vec![event("e", &[i; 100])]).await.unwrap();
    }
    store.close().await;
    drop(store);
    let seg = segments(dir.path()).pop().unwrap();
    let spans = record_spans(&seg);
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[spans[4].0 + 40] ^= 1;
    std::fs::write(&seg, &bytes).unwrap();
    expect_corruption(dir.path(), &seg, spans[4].0 as u64);
}

#[tokio::test]
async fn a_failed_fsync_stops_the_store_and_nothing_after_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultyStorage::new();
    let mut c = config(dir.path(), 1 << 20);
    c.storage = Arc::new(faults.clone());
    let store = EmbeddedStore::open(c).unwrap();
    let s = stream("product-f");
    store.append(&s, ExpectedVersion::Any, vec![event("e", b"kept")]).await.unwrap();
    faults.fail_syncs();
    let e = store.append(&s, ExpectedVersion::Any, vec![event("e", b"lost")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Io { .. }), "{e}");
    // Fail-stop: no later append is acknowledged, even one that would sync fine.
    let e = store.append(&s, ExpectedVersion::Any, vec![event("e", b"after")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Failed(_)), "{e}");
    assert_eq!(store.read_all(1, 10).await.unwrap().len(), 1, "readers never see the failed write");
    store.close().await;
    drop(store);
    let store = EmbeddedStore::open(config(dir.path(), 1 << 20)).unwrap();
    let all = store.read_all(1, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].payload, b"kept");
}

#[tokio::test]
async fn a_full_disk_fails_the_append_cleanly_and_appends_resume_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let faults = FaultyStorage::new();
    let mut c = config(dir.path(), 1 << 20);
    c.storage = Arc::new(faults.clone());
    let store = EmbeddedStore::open(c).unwrap();
    let s = stream("product-d");
    for i in 0..5u8 {
        store.append(&s, ExpectedVersion::Any, vec![event("e", &[i; 200])]).await.unwrap();
    }
    faults.limit_space(300);
    let e =
        store.append(&s, ExpectedVersion::Any, vec![event("e", &[9; 500]), event("e", &[9; 500])]).await.unwrap_err();
    assert!(matches!(e, StoreError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    assert!(matches!(store.health(), mall_events::StoreHealth::DiskFull { .. }));
    // Still full: still refused, still open.
    let e = store.append(&s, ExpectedVersion::Any, vec![event("e", &[7; 500])]).await.unwrap_err();
    assert!(matches!(e, StoreError::DiskFull { .. }), "{e}");
    // Space is freed: appends go on without a restart, right after the acknowledged ones.
    faults.free_space();
    let r = store.append(&s, ExpectedVersion::Exact(5), vec![event("e", b"after")]).await.unwrap();
    assert_eq!(r.first_position, 6);
    assert_eq!(store.health(), mall_events::StoreHealth::Ok);
    store.close().await;
    drop(store);
    // Opened again: exactly the acknowledged events, and appends go on.
    let store = EmbeddedStore::open(config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(store.read_all(1, 100).await.unwrap().len(), 6);
    let r = store.append(&s, ExpectedVersion::Exact(6), vec![event("e", b"again")]).await.unwrap();
    assert_eq!(r.first_position, 7);
}

#[tokio::test]
async fn a_second_writer_process_gets_a_clear_error_and_readers_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(EmbeddedConfig::new(dir.path())).unwrap();
    store.append(&stream("product-l"), ExpectedVersion::Any, vec![event("e", b"x")]).await.unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample.ndjson");
    let out = Command::new(MALL).args(["--data-dir", dir.path().to_str().unwrap(), "import", data]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let out = Command::new(MALL)
        .args(["--data-dir", dir.path().to_str().unwrap(), "events", "stats", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["events"], 1);
    // In this process too, a second open fails rather than sharing the directory.
    assert!(matches!(EmbeddedStore::open(EmbeddedConfig::new(dir.path())), Err(StoreError::Locked { .. })));
}
