//! The fuzz targets (`tests/fuzz/`, run by hand with `cargo fuzz run --fuzz-dir tests/fuzz
//! TARGET`) also run here, on every test run, for a fixed number of inputs: seeds (real records,
//! the committed golden payloads, real segment frames) and their mutations — bit flips, bytes
//! inserted, removed and overwritten, truncations and splices — from a fixed random seed, so a
//! failure is reproducible.

use chrono::Utc;
use mall_events::domain::EVENT_TYPES;
use mall_events::embedded::frame;
use mall_events::fuzzing;
use mall_events::{RecordedEvent, StreamId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ITERATIONS: usize = 100_000;

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..7) {
            0 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=input.len());
                input.insert(i, rng.random());
            }
            2 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input.remove(i);
            }
            3 if !input.is_empty() => {
                let i = rng.random_range(0..input.len());
                input[i] = *[0u8, 0xff, b'"', b'{', b'}', b'\\', b'9', 0x80].get(rng.random_range(0..8)).unwrap();
            }
            4 => {
                let n = rng.random_range(0..=input.len());
                input.truncate(n);
            }
            5 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = rng.random_range(0..=other.len());
                let at = rng.random_range(0..=input.len());
                let tail: Vec<u8> = input.split_off(at);
                input.extend_from_slice(&other[from..]);
                input.extend(tail.into_iter().take(16));
            }
            _ => {
                // A JSON-ish token in the middle: numbers at and beyond every bound.
                let tokens: [&[u8]; 8] = [
                    b"18446744073709551615",
                    b"-1",
                    b"1e308",
                    b"null",
                    b"\"\\u0000\"",
                    b"\"+10000-01-01T00:00:00Z\"",
                    b"[]",
                    b"{}",
                ];
                let t = tokens[rng.random_range(0..tokens.len())];
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, t.iter().copied());
            }
        }
    }
}

fn run(seeds: Vec<Vec<u8>>, target: fn(&[u8]), seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for s in &seeds {
        target(s);
    }
    for _ in 0..ITERATIONS {
        let mut input = seeds[rng.random_range(0..seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        target(&input);
    }
}

#[test]
fn the_record_parser_never_panics_and_what_it_accepts_round_trips() {
    let sample = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sample.ndjson")).unwrap();
    let seeds: Vec<Vec<u8>> = sample.lines().map(|l| l.as_bytes().to_vec()).collect();
    assert!(seeds.len() > 5);
    run(seeds, fuzzing::record, 1);
}

#[test]
fn the_event_decoder_never_panics_and_what_it_decodes_round_trips() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events/tests/golden");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let ty = name.split('.').next().unwrap();
        let Some(selector) = EVENT_TYPES.iter().position(|t| *t == ty) else { continue };
        let selector = selector as u8;
        let mut seed = vec![selector];
        seed.extend(std::fs::read(&path).unwrap());
        seeds.push(seed);
    }
    assert!(seeds.len() >= EVENT_TYPES.len());
    run(seeds, fuzzing::decode, 2);
}

#[test]
fn the_frame_reader_never_panics_nor_reads_past_its_buffer() {
    let mut segment = Vec::new();
    for i in 0..5u64 {
        frame::encode_into(
            &mut segment,
            &RecordedEvent {
                event_id: uuid::Uuid::now_v7(),
                stream_id: StreamId::parse(format!("product-p{i}")).unwrap(),
                stream_version: i + 1,
                position: i + 1,
                event_type: "product_viewed".into(),
                schema_version: 1,
                recorded_at: Utc::now(),
                tags: vec!["shopper:s".into(), "district:toys".into()],
                correlation_id: None,
                causation_id: Some(uuid::Uuid::now_v7()),
                payload: vec![i as u8; 40],
            },
        );
    }
    run(vec![segment.clone(), segment[..segment.len() / 2].to_vec()], fuzzing::frames, 3);
}
