//! Entry points for fuzzing the parsers that read bytes from outside: the record parser (HTTP
//! bodies, `mall import` lines), the event decoder (payloads in a log) and the segment-frame
//! reader (segment files). Each takes arbitrary bytes, must never panic, and checks what must
//! hold of whatever it accepts. Called by the `cargo fuzz` targets in `tests/fuzz/` and, for a
//! fixed number of generated inputs, by `tests/fuzz.rs` on every test run.

use crate::codec;
use crate::domain::{DomainEvent, EVENT_TYPES};
use crate::embedded::frame::{self, Frame};
use crate::records::parse_record;

/// A record, as HTTP and `mall import` read it: whatever is accepted passes the acceptance rule
/// and survives encoding and decoding unchanged.
pub fn record(data: &[u8]) {
    if let Ok(event) = parse_record(data) {
        event.validate().expect("an accepted record passes the acceptance rule");
        let payload = codec::encode(&event).expect("an accepted record encodes");
        let back = codec::decode(event.event_type(), event.schema_version(), &payload).expect("and decodes");
        assert_eq!(back, event, "a record survives the codec");
    }
}

/// A stored payload of every event type and version: decoding never panics, and what decodes
/// encodes back to a payload that decodes to the same event.
pub fn decode(data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else { return };
    let event_type = EVENT_TYPES[selector as usize % EVENT_TYPES.len()];
    for version in [1u16, 2, (selector >> 4) as u16] {
        if let Ok(event) = codec::decode(event_type, version, payload) {
            let again = codec::encode(&event).expect("a decoded event encodes");
            let back: DomainEvent =
                codec::decode(event.event_type(), event.schema_version(), &again).expect("and decodes again");
            // Compared as bytes: a NaN in a decision's metrics is not equal to itself.
            assert_eq!(codec::encode(&back).expect("encodes"), again);
        }
    }
}

/// Bytes of a segment file: reading frames never panics nor reads past the buffer, and a valid
/// frame's body either decodes into a record that re-encodes to the same frame, or is refused.
pub fn frames(data: &[u8]) {
    let mut at = 0;
    while at < data.len() {
        match frame::read_frame(&data[at..], 1 << 20) {
            Frame::Valid { body, len } => {
                assert!(len <= data.len() - at);
                if let Ok(view) = frame::decode_body(body)
                    && let Ok(recorded) = view.to_recorded()
                {
                    let mut out = Vec::new();
                    frame::encode_into(&mut out, &recorded);
                    assert_eq!(&out[..], &data[at..at + len], "a valid frame re-encodes to itself");
                }
                at += len;
            }
            Frame::Incomplete => break,
            Frame::Invalid(_) => at += 1,
        }
    }
}
