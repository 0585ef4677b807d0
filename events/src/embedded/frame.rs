//! The on-disk record: a length- and checksum-framed, self-describing envelope.
//!
//! ```text
//! frame  = len:u32le  crc:u32le  body[len]           crc = crc32c(len bytes ++ body)
//! body   = format:u8(=1)  position:u64  stream_version:u64  event_id:[16]  recorded_at_us:i64
//!          schema_version:u16  flags:u8  [correlation:[16]]  [causation:[16]]
//!          stream:str16  event_type:str16  tag_count:u16 tag:str16*  payload_len:u32 payload
//! str16  = len:u16 bytes
//! ```
//! Every record names its own global position, so a valid record found at the wrong place is
//! detected as corruption rather than served.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::envelope::RecordedEvent;
use crate::ids::StreamId;

/// Bytes before the body: length and checksum.
pub const FRAME_HEADER: usize = 8;
const FORMAT: u8 = 1;
const HAS_CORRELATION: u8 = 1;
const HAS_CAUSATION: u8 = 2;

/// Appends one framed record to `out`.
pub fn encode_into(out: &mut Vec<u8>, e: &RecordedEvent) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    out.push(FORMAT);
    out.extend_from_slice(&e.position.to_le_bytes());
    out.extend_from_slice(&e.stream_version.to_le_bytes());
    out.extend_from_slice(e.event_id.as_bytes());
    out.extend_from_slice(&e.recorded_at.timestamp_micros().to_le_bytes());
    out.extend_from_slice(&e.schema_version.to_le_bytes());
    let flags = if e.correlation_id.is_some() { HAS_CORRELATION } else { 0 }
        | if e.causation_id.is_some() { HAS_CAUSATION } else { 0 };
    out.push(flags);
    for id in [e.correlation_id, e.causation_id].into_iter().flatten() {
        out.extend_from_slice(id.as_bytes());
    }
    let str16 = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    str16(out, e.stream_id.as_str());
    str16(out, &e.event_type);
    out.extend_from_slice(&(e.tags.len() as u16).to_le_bytes());
    for t in &e.tags {
        str16(out, t);
    }
    out.extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&e.payload);
    let len = (out.len() - start - FRAME_HEADER) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), &out[start + FRAME_HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// What reading a frame at an offset found.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A whole record whose checksum matches.
    Valid { body: &'a [u8], len: usize },
    /// Fewer bytes remain than the frame needs: the end of what was written.
    Incomplete,
    /// A length or checksum that does not hold.
    Invalid(String),
}

/// Reads the frame at the start of `buf`.
pub fn read_frame(buf: &[u8], max_body: usize) -> Frame<'_> {
    if buf.len() < FRAME_HEADER {
        return Frame::Incomplete;
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > max_body {
        return Frame::Invalid(format!("record length {len} is out of bounds"));
    }
    if buf.len() < FRAME_HEADER + len {
        return Frame::Incomplete;
    }
    let body = &buf[FRAME_HEADER..FRAME_HEADER + len];
    let actual = crc32c::crc32c_append(crc32c::crc32c(&buf[0..4]), body);
    if actual != crc {
        return Frame::Invalid(format!("checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"));
    }
    Frame::Valid { body, len: FRAME_HEADER + len }
}

/// A decoded record body borrowing from the buffer it was read from.
#[derive(Debug)]
pub struct RecordView<'a> {
    pub position: u64,
    pub stream_version: u64,
    pub event_id: Uuid,
    pub recorded_at_us: i64,
    pub schema_version: u16,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub stream_id: &'a str,
    pub event_type: &'a str,
    pub tags: Vec<&'a str>,
    pub payload: &'a [u8],
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or("record body is truncated")?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn uuid(&mut self) -> Result<Uuid, String> {
        Ok(Uuid::from_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn str16(&mut self) -> Result<&'a str, String> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| "record holds invalid UTF-8".to_string())
    }
}

/// Decodes a record body (after its frame was checked).
pub fn decode_body(body: &[u8]) -> Result<RecordView<'_>, String> {
    let mut r = Reader { buf: body, at: 0 };
    let format = r.u8()?;
    if format != FORMAT {
        return Err(format!("unknown record format {format}"));
    }
    let position = r.u64()?;
    let stream_version = r.u64()?;
    let event_id = r.uuid()?;
    let recorded_at_us = r.u64()? as i64;
    let schema_version = r.u16()?;
    let flags = r.u8()?;
    let correlation_id = if flags & HAS_CORRELATION != 0 { Some(r.uuid()?) } else { None };
    let causation_id = if flags & HAS_CAUSATION != 0 { Some(r.uuid()?) } else { None };
    let stream_id = r.str16()?;
    let event_type = r.str16()?;
    let n = r.u16()? as usize;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(r.str16()?);
    }
    let plen = r.u32()? as usize;
    let payload = r.take(plen)?;
    if r.at != body.len() {
        return Err("record body has trailing bytes".into());
    }
    Ok(RecordView {
        position,
        stream_version,
        event_id,
        recorded_at_us,
        schema_version,
        correlation_id,
        causation_id,
        stream_id,
        event_type,
        tags,
        payload,
    })
}

impl RecordView<'_> {
    /// Copies the record out of its buffer.
    pub fn to_recorded(&self) -> Result<RecordedEvent, String> {
        Ok(RecordedEvent {
            event_id: self.event_id,
            stream_id: StreamId::parse(self.stream_id).map_err(|e| e.to_string())?,
            stream_version: self.stream_version,
            position: self.position,
            event_type: self.event_type.to_string(),
            schema_version: self.schema_version,
            recorded_at: micros_to_time(self.recorded_at_us)?,
            tags: self.tags.iter().map(|t| t.to_string()).collect(),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            payload: self.payload.to_vec(),
        })
    }
}

/// Converts microseconds since the Unix epoch to a UTC time.
pub fn micros_to_time(us: i64) -> Result<DateTime<Utc>, String> {
    Utc.timestamp_micros(us).single().ok_or_else(|| format!("timestamp {us} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RecordedEvent {
        RecordedEvent {
            event_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            stream_id: StreamId::parse("product-42").unwrap(),
            stream_version: 3,
            position: 17,
            event_type: "product_viewed".into(),
            schema_version: 1,
            recorded_at: micros_to_time(1_764_000_000_123_456).unwrap(),
            tags: vec!["shopper:7".into(), "district:toys".into()],
            correlation_id: Some(Uuid::from_u128(5)),
            causation_id: None,
            payload: vec![1, 2, 3],
        }
    }

    #[test]
    fn a_record_round_trips_through_its_frame() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample());
        let Frame::Valid { body, len } = read_frame(&buf, 1 << 20) else { panic!("valid frame expected") };
        assert_eq!(len, buf.len());
        assert_eq!(decode_body(body).unwrap().to_recorded().unwrap(), sample());
    }

    #[test]
    fn any_flipped_bit_is_caught_by_the_checksum() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample());
        for i in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[i] ^= 1 << bit;
                assert!(!matches!(read_frame(&bad, 1 << 20), Frame::Valid { .. }), "flip at {i}.{bit} went unnoticed");
            }
        }
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample());
        for cut in 0..buf.len() {
            assert!(matches!(read_frame(&buf[..cut], 1 << 20), Frame::Incomplete), "cut at {cut}");
        }
    }

    #[test]
    fn the_frame_format_matches_the_committed_golden_bytes() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &sample());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/frame.v1.bin");
        if std::env::var_os("MALL_BLESS").is_some() {
            std::fs::write(path, &buf).unwrap();
        }
        let golden = std::fs::read(path).expect("golden frame bytes are committed");
        assert_eq!(buf, golden, "the on-disk record format changed: stored logs would no longer open");
        let Frame::Valid { body, .. } = read_frame(&golden, 1 << 20) else { panic!() };
        assert_eq!(decode_body(body).unwrap().to_recorded().unwrap(), sample());
    }
}
