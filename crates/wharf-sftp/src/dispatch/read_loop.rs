//! The dispatcher's input: the channel's bytes are framed into packets; the
//! first must be INIT, answered with VERSION; every other packet takes its
//! request budget, is decoded and started, in order. A chunk of input is
//! given back to the client as window once all of its packets are started.
//!
//! Waiting for budget (or for room in a handle's queue, in `start`) is
//! where a busy channel holds back: input stays unconsumed, so the client's
//! window closes. A client that disconnects meanwhile ends the channel at
//! once.

use std::sync::Arc;

use bytes::Bytes;

use super::frame::Framer;
use super::{Ended, Input, Shared, extensions};
use crate::codec;

/// Reads `input` until the client closes it or breaks the protocol.
pub(super) async fn run<I: Input>(shared: &Arc<Shared>, input: &mut I) -> Ended {
    let mut framer = Framer::default();
    let mut initialised = false;
    while let Some(chunk) = input.next().await {
        let chunk_len = chunk.len();
        framer.push(chunk);
        loop {
            let packet = match framer.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(reason) => return Ended::Protocol(reason),
            };
            let started = if initialised {
                start_request(shared, input, packet).await
            } else {
                initialised = true;
                init(shared, packet).await
            };
            if let Err(ended) = started {
                return ended;
            }
        }
        input.consumed(chunk_len).await;
    }
    Ended::Eof
}

/// INIT: answered with VERSION and the extensions we serve.
async fn init(shared: &Shared, packet: Bytes) -> Result<(), Ended> {
    if let Err(e) = codec::decode_init(packet) {
        return Err(Ended::Protocol(e.0.to_owned()));
    }
    shared.replies.send_version(extensions::version()).await;
    Ok(())
}

/// Takes one request's budget, decodes the request and starts it.
async fn start_request<I: Input>(
    shared: &Arc<Shared>,
    input: &I,
    packet: Bytes,
) -> Result<(), Ended> {
    let permit = tokio::select! {
        permit = shared.budgets.requests.take(packet.len()) => match permit {
            Some(permit) => permit,
            None => return Err(Ended::Eof),
        },
        () = input.closed() => return Err(Ended::Eof),
    };
    let (id, request) = match codec::decode_request(packet) {
        Ok(request) => request,
        Err(e) => return Err(Ended::Protocol(format!("malformed packet: {}", e.0))),
    };
    tokio::select! {
        () = super::start(shared, id, request, permit) => Ok(()),
        () = input.closed() => Err(Ended::Eof),
    }
}
