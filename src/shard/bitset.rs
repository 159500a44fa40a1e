//! A growable set of small integers (point offsets), one bit each.
//!
//! Used for a segment's deleted offsets and for "vector missing" marks. Bits beyond the
//! stored words read as unset, so an empty set costs nothing. On disk (inside other
//! files): `words u32` followed by that many `u64` little-endian words.

use std::io::{self, Read, Write};

use crate::shard::binio::{Dec, DecodeResult};
use crate::shard::files;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub fn get(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Sets bit `i`; returns whether it was unset before.
    pub fn set(&mut self, i: usize) -> bool {
        let word = i / 64;
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let mask = 1u64 << (i % 64);
        let was_unset = self.words[word] & mask == 0;
        self.words[word] |= mask;
        was_unset
    }

    pub fn count_ones(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Keeps only the bits at positions where `keep` holds, renumbered densely (the
    /// same compaction a segment's rows go through).
    pub fn compact(&self, len: usize, keep: impl Fn(usize) -> bool) -> BitSet {
        let mut out = BitSet::default();
        let mut j = 0;
        for i in 0..len {
            if keep(i) {
                if self.get(i) {
                    out.set(j);
                }
                j += 1;
            }
        }
        out
    }

    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let used = self
            .words
            .iter()
            .rposition(|&w| w != 0)
            .map_or(0, |p| p + 1);
        w.write_all(&(used as u32).to_le_bytes())?;
        for word in &self.words[..used] {
            w.write_all(&word.to_le_bytes())?;
        }
        Ok(())
    }

    /// [`BitSet::read_from`] for a buffer in memory.
    pub fn decode(d: &mut Dec<'_>) -> DecodeResult<BitSet> {
        let n = d.u32()? as usize;
        let bytes = d.take(n.saturating_mul(8))?;
        let words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(BitSet { words })
    }

    pub fn read_from(r: &mut dyn Read) -> io::Result<BitSet> {
        let n = files::read_u32(r)? as usize;
        let bytes = files::read_vec(r, n * 8)?;
        let words = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect();
        Ok(BitSet { words })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_count_and_round_trip() {
        let mut b = BitSet::default();
        assert!(!b.get(1000));
        assert!(b.set(3));
        assert!(!b.set(3));
        b.set(130);
        assert_eq!(b.count_ones(), 2);
        let mut buf = Vec::new();
        b.write_to(&mut buf).unwrap();
        assert_eq!(BitSet::read_from(&mut &buf[..]).unwrap(), b);
        let compacted = b.compact(200, |i| i != 0);
        assert!(compacted.get(2) && compacted.get(129) && !compacted.get(3));
    }
}
