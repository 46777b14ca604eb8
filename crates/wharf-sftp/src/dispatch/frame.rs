//! Cutting the channel's byte stream into SFTP packets.
//!
//! Every packet gets one allocation of exactly its own length, made once its
//! length is known, and the channel's chunks are copied into it as they
//! arrive. Growing one receive buffer instead (append, reserve, split) made
//! glibc reallocate 256 KiB WRITE packets through a series of sizes (up to
//! twice the packet), and the holes those left in the malloc arenas were what
//! made RSS grow far beyond the bytes actually held during a large upload.
//! Equal-sized blocks, freed whole, are reused as they are.

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::MAX_PACKET_BYTES;

/// Packets out of a byte stream that arrives in arbitrary chunks.
#[derive(Default)]
pub(crate) struct Framer {
    /// The length prefix of the next packet, as far as it has arrived.
    header: [u8; 4],
    header_len: usize,
    /// The packet being filled, allocated with exactly its length.
    body: Option<BytesMut>,
    /// The length of the packet being filled.
    body_len: usize,
    /// The rest of the last chunk, not yet framed.
    rest: Bytes,
}

impl Framer {
    /// Takes the next chunk of the stream. Call [`Framer::next_packet`]
    /// until it returns `Ok(None)` before pushing the next chunk.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        debug_assert!(self.rest.is_empty(), "push before the last chunk is framed");
        self.rest = chunk;
    }

    /// The next complete packet (without its length prefix), `Ok(None)` when
    /// the stream needs more bytes, or why the stream is broken.
    pub(crate) fn next_packet(&mut self) -> Result<Option<Bytes>, String> {
        loop {
            if let Some(body) = &mut self.body {
                let missing = self.body_len - body.len();
                let take = missing.min(self.rest.len());
                body.extend_from_slice(&self.rest[..take]);
                self.rest.advance(take);
                if body.len() < self.body_len {
                    return Ok(None);
                }
                self.header_len = 0;
                return Ok(self.body.take().map(BytesMut::freeze));
            }
            if self.rest.is_empty() {
                return Ok(None);
            }
            let take = (4 - self.header_len).min(self.rest.len());
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&self.rest[..take]);
            self.header_len += take;
            self.rest.advance(take);
            if self.header_len < 4 {
                return Ok(None);
            }
            let len = u32::from_be_bytes(self.header) as usize;
            if len > MAX_PACKET_BYTES {
                return Err(format!(
                    "packet of {len} bytes is larger than the {MAX_PACKET_BYTES} allowed"
                ));
            }
            if len == 0 {
                return Err("empty packet".into());
            }
            self.body = Some(BytesMut::with_capacity(len));
            self.body_len = len;
        }
    }

    /// The capacity of the packet being filled (for tests).
    #[cfg(test)]
    pub(super) fn filling(&self) -> Option<(usize, usize)> {
        self.body.as_ref().map(|b| (b.len(), b.capacity()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn framed(packets: &[&[u8]]) -> Vec<u8> {
        let mut stream = Vec::new();
        for p in packets {
            stream.extend_from_slice(&u32::try_from(p.len()).unwrap().to_be_bytes());
            stream.extend_from_slice(p);
        }
        stream
    }

    /// Frames `stream` cut into chunks of `size` bytes.
    fn frame_all(stream: &[u8], size: usize) -> Result<Vec<Bytes>, String> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for chunk in stream.chunks(size) {
            framer.push(Bytes::copy_from_slice(chunk));
            while let Some(packet) = framer.next_packet()? {
                out.push(packet);
            }
            if let Some((len, capacity)) = framer.filling() {
                assert!(len < capacity);
            }
        }
        Ok(out)
    }

    #[test]
    fn packets_come_out_whole_whatever_the_chunking() {
        let big = vec![7u8; 261_149];
        let packets: [&[u8]; 4] = [b"\x01abc", &big, b"\x05", &big[..1000]];
        let stream = framed(&packets);
        for size in [1, 3, 4, 5, 1000, 32_768, 65_535, stream.len()] {
            let out = frame_all(&stream, size).unwrap();
            assert_eq!(out.len(), packets.len(), "chunks of {size}");
            for (got, want) in out.iter().zip(packets) {
                assert_eq!(&got[..], want, "chunks of {size}");
            }
        }
    }

    #[test]
    fn a_packet_is_one_allocation_of_its_own_length() {
        // The old receive buffer grew by doubling: a 261,149-byte packet
        // arriving in 32 KiB chunks ended up in a 522,298-byte block.
        let big = vec![1u8; 261_149];
        let stream = framed(&[&big]);
        let mut framer = Framer::default();
        for chunk in stream.chunks(32_768) {
            framer.push(Bytes::copy_from_slice(chunk));
            if let Ok(Some(packet)) = framer.next_packet() {
                assert_eq!(packet.len(), big.len());
                return;
            }
            assert_eq!(framer.filling().map(|(_, c)| c), Some(big.len()));
        }
        panic!("the packet never completed");
    }

    #[test]
    fn oversized_and_empty_packets_are_refused() {
        let mut stream = u32::try_from(MAX_PACKET_BYTES + 1)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        stream.push(0);
        assert!(frame_all(&stream, 2).is_err());
        assert!(frame_all(&[0, 0, 0, 0, 1], 5).is_err());
    }
}
