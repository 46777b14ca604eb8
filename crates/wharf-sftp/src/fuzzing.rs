//! Entry points for the fuzz targets (`fuzz/fuzz_targets/sftp_decode.rs`),
//! also run over generated inputs by this crate's tests as a smoke run.
//! Each takes arbitrary bytes, must never panic, and checks what must hold
//! for every input.

use bytes::Bytes;

use crate::codec::{MAX_PACKET_BYTES, decode_init, decode_request};
use crate::dispatch::frame::Framer;

/// The client's byte stream, as the dispatcher sees it: the first byte
/// says where to cut the rest into chunks; every framed packet is decoded
/// as a request (and the first as INIT).
pub fn sftp_stream(data: &[u8]) {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut).max(1);
    let mut framer = Framer::default();
    let mut first = true;
    for piece in stream.chunks(chunk) {
        framer.push(Bytes::copy_from_slice(piece));
        loop {
            match framer.next_packet() {
                Ok(Some(packet)) => {
                    assert!(!packet.is_empty() && packet.len() <= MAX_PACKET_BYTES);
                    if first {
                        let _ = decode_init(packet.clone());
                        first = false;
                    }
                    let _ = decode_request(packet);
                }
                Ok(None) => break,
                // A broken stream ends the session: nothing more is read.
                Err(_) => return,
            }
        }
    }
}

/// One packet body (type, id, fields), decoded directly.
pub fn sftp_packet(data: &[u8]) {
    let _ = decode_request(Bytes::copy_from_slice(data));
    let _ = decode_init(Bytes::copy_from_slice(data));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smoke run of the fuzz targets over generated inputs.
    #[test]
    fn the_fuzz_targets_survive_generated_inputs() {
        let seeds: [&[u8]; 4] = [
            // INIT v3, then OPEN "a" READ, then READ handle "0" off 0 len 32768.
            b"\0\0\0\x05\x01\0\0\0\x03\0\0\0\x15\x03\0\0\0\x01\0\0\0\x01a\0\0\0\x01\0\0\0\0\0\0\0\x1a\x05\0\0\0\x02\0\0\0\x010\0\0\0\0\0\0\0\0\0\0\x80\0",
            b"\0\0\0\x0d\x0b\0\0\0\x07\0\0\0\x04/tmp",
            b"\xff\xff\xff\xff",
            b"\0\0\0\x09\x11\0\0\0\x01\0\0\0\x10",
        ];
        wharf_test_support::fuzz::mutated_inputs(&seeds, 20_000, 3, &[], |input| {
            sftp_stream(input);
            sftp_packet(input);
            sftp_packet(&input[4.min(input.len())..]);
        });
    }
}
