//! The memory one channel may hold: every request holds part of its
//! request budget until its reply has been handed to the channel; READ
//! replies and WRITE data also hold budgets of their own, which are charged
//! to the user's and the process's shares too. A budget that is spent makes
//! its taker wait, and a channel that waits stops reading its input, so the
//! client's SSH window closes.

use wharf_vfs::{Quota, Taken};

/// Bytes of requests (and of the replies to requests other than READ) one
/// channel may hold at once. Requests are small but for WRITE, whose data
/// also needs the write budget before the next request is taken.
const REQUEST_BYTES: usize = 8 << 20;
/// READ replies one channel may hold at once (also counted against its
/// user's and the process's memory).
const READ_BYTES: usize = 32 << 20;
/// WRITE data a session may hold before its store has taken it (part of
/// [`REQUEST_BYTES`]). The OpenSSH client keeps 64 WRITEs of 255 KiB in
/// flight (16 MiB); held whole, those alone were a third of the memory SPEC
/// allows one upload (part size x concurrency + 16 MiB). A few MiB keep the
/// store busy just as well: the rest waits in the client and in TCP.
const WRITE_BYTES: usize = 4 << 20;

/// One budget, counted in bytes.
#[derive(Clone)]
pub(super) struct Budget(Quota);

impl Budget {
    /// Waits until `bytes` are free at every level and takes them until
    /// the result is dropped. `None` only if a level was closed, which
    /// never happens.
    pub(super) async fn take(&self, bytes: usize) -> Option<Taken> {
        self.0.take(Quota::units_for(bytes)).await
    }
}

/// A channel's budgets.
pub(super) struct Budgets {
    /// Request and reply bytes this channel may hold. Every request takes
    /// from it, so that small requests (OPEN, STAT) always progress even
    /// when its user's share is spent.
    pub(super) requests: Budget,
    /// The large buffers, READ replies, taken from this channel's budget
    /// of bulk data and from its user's and the process's shares
    /// (`max_memory_per_user`, `max_memory`).
    pub(super) reads: Budget,
    /// WRITE data not yet taken by the store, from this channel's write
    /// budget and from its user's and the process's shares.
    pub(super) writes: Budget,
}

impl Budgets {
    /// A channel's budgets; `memory` is its share of its user's and the
    /// process's memory.
    pub(super) fn new(memory: &Quota) -> Budgets {
        Budgets {
            requests: Budget(Quota::new(Quota::units_for(REQUEST_BYTES))),
            reads: Budget(memory.within(Quota::units_for(READ_BYTES))),
            writes: Budget(memory.within(Quota::units_for(WRITE_BYTES))),
        }
    }
}
