//! Uploads: a request body is unpacked on a blocking thread while the handler is still
//! receiving it, so an uploaded snapshot is never spooled to disk as a whole archive
//! first (one write of the data instead of two). Its sha256 is computed over the stream
//! by the unpacker and checked before anything is swapped in.

use bytes::Bytes;

/// A blocking reader over chunks sent from an async task: lets a request body be
/// unpacked on a blocking thread while the handler is still receiving it.
pub struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl ChannelReader {
    /// A reader and the sender that feeds it (bounded: the sender waits when the
    /// reader falls behind, so memory stays at a few chunks).
    pub fn channel() -> (
        tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
        ChannelReader,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (
            tx,
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(err)) => return Err(err),
                // The sender is done: end of stream.
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn reads_chunks_in_order_then_ends() {
        let (tx, mut reader) = ChannelReader::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            tx.send(Ok(Bytes::from_static(b"ab"))).await.unwrap();
            tx.send(Ok(Bytes::from_static(b"cde"))).await.unwrap();
        });
        drop(tx);
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn an_error_in_the_stream_is_an_error_of_the_reader() {
        let (tx, mut reader) = ChannelReader::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            tx.send(Err(std::io::Error::other("cut"))).await.unwrap();
        });
        let mut out = Vec::new();
        assert!(reader.read_to_end(&mut out).is_err());
    }
}
