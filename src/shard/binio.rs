//! Little-endian binary encoding helpers shared by the WAL records and the segment files.
//!
//! Owns nothing but the primitive layout: integers are little-endian, byte strings and
//! `f32` lists are prefixed with a `u32` length, and a [`PointId`] is a tag byte (0 =
//! number, 1 = UUID) followed by 8 or 16 bytes. Decoding never panics: a short or
//! malformed buffer is a [`DecodeError`].

use std::fmt;

use uuid::Uuid;

use crate::types::PointId;

/// A buffer that does not hold what the format promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub type DecodeResult<T> = Result<T, DecodeError>;

pub fn put_u8(buf: &mut Vec<u8>, v: u8) {
    buf.push(v);
}

pub fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_le_bytes());
}

pub fn put_u64(buf: &mut Vec<u8>, v: u64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Length-prefixed bytes. Lengths above `u32::MAX` cannot occur for our records
/// (callers bound request sizes far below 4 GiB).
pub fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(buf, bytes.len() as u32);
    buf.extend_from_slice(bytes);
}

pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_bytes(buf, s.as_bytes());
}

pub fn put_id(buf: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            put_u8(buf, 0);
            put_u64(buf, *n);
        }
        PointId::Uuid(u) => {
            put_u8(buf, 1);
            buf.extend_from_slice(u.as_bytes());
        }
    }
}

/// Raw `f32`s without a length prefix.
pub fn put_f32s_raw(buf: &mut Vec<u8>, values: &[f32]) {
    buf.reserve(values.len() * 4);
    for v in values {
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

pub fn put_f32s(buf: &mut Vec<u8>, values: &[f32]) {
    put_u32(buf, values.len() as u32);
    put_f32s_raw(buf, values);
}

/// Reads the primitives back from a byte slice.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn take(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| {
            DecodeError(format!(
                "truncated: wanted {n} bytes at offset {}",
                self.pos
            ))
        })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> DecodeResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self) -> DecodeResult<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self) -> DecodeResult<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    pub fn string(&mut self) -> DecodeResult<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError("string is not UTF-8".into()))
    }

    pub fn id(&mut self) -> DecodeResult<PointId> {
        match self.u8()? {
            0 => Ok(PointId::Num(self.u64()?)),
            1 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16)?);
                Ok(PointId::Uuid(Uuid::from_bytes(a)))
            }
            t => Err(DecodeError(format!("unknown point id tag {t}"))),
        }
    }

    /// Appends `n` raw `f32`s to `out`.
    pub fn f32s_raw_into(&mut self, n: usize, out: &mut Vec<f32>) -> DecodeResult<()> {
        let bytes = self.take(
            n.checked_mul(4)
                .ok_or_else(|| DecodeError("f32 count overflows".into()))?,
        )?;
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        Ok(())
    }

    pub fn f32s(&mut self) -> DecodeResult<Vec<f32>> {
        let n = self.u32()? as usize;
        let mut out = Vec::with_capacity(n.min(self.buf.len() / 4));
        self.f32s_raw_into(n, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut buf = Vec::new();
        put_u8(&mut buf, 7);
        put_u32(&mut buf, 0xdead_beef);
        put_u64(&mut buf, u64::MAX - 1);
        put_str(&mut buf, "héllo");
        put_id(&mut buf, &PointId::Num(42));
        put_id(&mut buf, &PointId::Uuid(Uuid::from_u128(99)));
        put_f32s(&mut buf, &[1.5, -2.0]);
        let mut d = Dec::new(&buf);
        assert_eq!(d.u8().unwrap(), 7);
        assert_eq!(d.u32().unwrap(), 0xdead_beef);
        assert_eq!(d.u64().unwrap(), u64::MAX - 1);
        assert_eq!(d.string().unwrap(), "héllo");
        assert_eq!(d.id().unwrap(), PointId::Num(42));
        assert_eq!(d.id().unwrap(), PointId::Uuid(Uuid::from_u128(99)));
        assert_eq!(d.f32s().unwrap(), vec![1.5, -2.0]);
        assert!(d.is_empty());
    }

    #[test]
    fn short_buffers_are_errors() {
        let mut buf = Vec::new();
        put_f32s(&mut buf, &[1.0, 2.0]);
        buf.truncate(buf.len() - 1);
        assert!(Dec::new(&buf).f32s().is_err());
        assert!(Dec::new(&[2]).id().is_err());
    }
}
