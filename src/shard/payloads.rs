//! The payloads of a segment's rows, kept as their JSON text in one buffer.
//!
//! A decoded payload is expensive to keep: `{"n": 7}` as a `serde_json::Map` (an
//! `IndexMap`, since shoal builds serde_json with `preserve_order`) costs ~440 heap
//! bytes (its entry vector, hash table and key string; measured with a counting
//! allocator) on top of the 72-byte map itself, against 8 bytes of JSON. At 500k
//! points that was ~230 MiB of a 466 MiB budget. So a segment keeps each row's JSON
//! text (the same bytes its points file stores) in one `Vec<u8>`, and a payload is
//! decoded when it is read: retrieve, scroll, search results and filters.
//!
//! A row's payload changes in place only in the appendable segment (rows not yet
//! handed to a checkpoint); the new text is appended and the old text stays unused
//! until the rows are compacted ([`PayloadColumn::retain`], when a segment is sealed).

use std::ops::Range;

use crate::collection::point::Payload;

/// Row payloads as JSON text; an empty payload is stored as no bytes.
#[derive(Debug, Clone, Default)]
pub struct PayloadColumn {
    text: Vec<u8>,
    /// Where each row's text starts in `text`.
    starts: Vec<u64>,
    /// Length of each row's text (0: empty payload).
    lens: Vec<u32>,
}

impl PartialEq for PayloadColumn {
    /// Same rows with the same text (unused text left by in-place updates is ignored).
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && (0..self.len()).all(|i| self.text(i) == other.text(i))
    }
}

impl PayloadColumn {
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Appends a row's payload.
    pub fn push(&mut self, payload: &Payload) {
        let start = self.text.len();
        encode_into(payload, &mut self.text);
        self.push_span(start);
    }

    /// Appends a row whose payload is already JSON text (empty: no payload). The text
    /// must come from [`PayloadColumn::text`] or a checked points file.
    pub fn push_text(&mut self, text: &[u8]) {
        let start = self.text.len();
        self.text.extend_from_slice(text);
        self.push_span(start);
    }

    fn push_span(&mut self, start: usize) {
        self.starts.push(start as u64);
        self.lens.push((self.text.len() - start) as u32);
    }

    /// Row `off`'s JSON text (empty for an empty payload).
    pub fn text(&self, off: usize) -> &[u8] {
        let start = self.starts[off] as usize;
        &self.text[start..start + self.lens[off] as usize]
    }

    /// Row `off`'s payload, decoded.
    pub fn get(&self, off: usize) -> Payload {
        decode(self.text(off))
    }

    /// Replaces row `off`'s payload (its old text becomes unused until compaction).
    pub fn set(&mut self, off: usize, payload: &Payload) {
        let start = self.text.len();
        encode_into(payload, &mut self.text);
        self.starts[off] = start as u64;
        self.lens[off] = (self.text.len() - start) as u32;
    }

    /// Keeps the rows at `kept` (ascending offsets), in that order, and drops unused text.
    pub fn retain(&mut self, kept: &[usize]) {
        let mut compact = PayloadColumn::default();
        compact.reserve(
            kept.len(),
            kept.iter().map(|&i| self.lens[i] as usize).sum(),
        );
        kept.iter().for_each(|&i| compact.push_text(self.text(i)));
        *self = compact;
    }

    /// A copy of the rows in `range`.
    pub fn copy_range(&self, range: Range<usize>) -> PayloadColumn {
        let bytes = range.clone().map(|i| self.lens[i] as usize).sum();
        let mut out = PayloadColumn::default();
        out.reserve(range.len(), bytes);
        range.for_each(|i| out.push_text(self.text(i)));
        out
    }

    /// Appends every row of `other`.
    pub fn append(&mut self, other: &PayloadColumn) {
        self.reserve(other.len(), other.text.len());
        (0..other.len()).for_each(|i| self.push_text(other.text(i)));
    }

    /// Room for `rows` more rows holding `bytes` of text in all.
    pub fn reserve(&mut self, rows: usize, bytes: usize) {
        self.text.reserve_exact(bytes);
        self.starts.reserve_exact(rows);
        self.lens.reserve_exact(rows);
    }

    pub fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.starts.shrink_to_fit();
        self.lens.shrink_to_fit();
    }
}

/// The stored form of a payload: its JSON text, or nothing when it is empty.
fn encode_into(payload: &Payload, out: &mut Vec<u8>) {
    if !payload.is_empty() {
        // Writing a map of JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, payload);
    }
}

/// Decodes stored text. The text was produced by [`encode_into`] or read from a points
/// file whose checksum and JSON were checked (`segment.rs`), so it is valid; were it
/// not, the row reads as an empty payload and the error is logged.
fn decode(text: &[u8]) -> Payload {
    if text.is_empty() {
        return Payload::new();
    }
    serde_json::from_slice(text).unwrap_or_else(|e| {
        tracing::error!(error = %e, "stored payload is not a JSON object");
        Payload::new()
    })
}

/// Checks that `text` is what [`encode_into`] stores: empty or one JSON object. Cheaper
/// than decoding (nothing is built).
pub fn is_valid_text(text: &[u8]) -> bool {
    text.is_empty()
        || (text.first() == Some(&b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: serde_json::Value) -> Payload {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rows_round_trip_update_and_compact() {
        let mut col = PayloadColumn::default();
        col.push(&payload(json!({"n": 1, "tag": "a"})));
        col.push(&Payload::new());
        col.push(&payload(json!({"f": 0.1, "nested": {"x": [1, 2]}})));
        assert_eq!(col.get(0), payload(json!({"n": 1, "tag": "a"})));
        assert_eq!(col.get(1), Payload::new());
        assert!(col.text(1).is_empty());
        assert_eq!(
            col.get(2),
            payload(json!({"f": 0.1, "nested": {"x": [1, 2]}}))
        );

        col.set(0, &payload(json!({"n": 2})));
        assert_eq!(col.get(0), payload(json!({"n": 2})));
        let before = col.clone();
        col.retain(&[0, 2]);
        assert_eq!(col.len(), 2);
        assert_eq!(col.get(0), before.get(0));
        assert_eq!(col.get(1), before.get(2));
        assert_eq!(col.text.len(), col.text(0).len() + col.text(1).len());

        let mut joined = before.copy_range(0..1);
        joined.append(&before.copy_range(1..3));
        assert_eq!(joined, before, "equality ignores unused text");
    }

    #[test]
    fn only_objects_are_valid_text() {
        assert!(is_valid_text(b""));
        assert!(is_valid_text(br#"{"a":1}"#));
        assert!(!is_valid_text(b"[1]"));
        assert!(!is_valid_text(br#"{"a":"#));
    }
}
