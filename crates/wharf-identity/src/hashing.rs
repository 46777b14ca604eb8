//! Bounded password verification, for every scheme wharf checks (argon2,
//! bcrypt, sha512-crypt, pbkdf2-sha256: [`crate::HashScheme`]) in one queue.
//!
//! One argon2id check costs 19 MiB and tens of milliseconds of a core (a
//! bcrypt or sha512-crypt check tens to hundreds of milliseconds), and
//! anyone who can open a connection can ask for one (unknown users too: they
//! are checked against a dummy hash so that they take the same time). Left
//! unbounded, 128 concurrent guesses cost 1.4 GiB and delay every real login
//! by seconds. So checks run at most `permits` at a time (one per core), the
//! rest wait in a queue that is
//!
//! * **bounded** (`max_waiting`; past it a check is refused at once as busy),
//! * **timed** (`wait_limit`; a check that waited that long is refused as
//!   busy), and
//! * **fair between client addresses**: waiting checks are served one address
//!   at a time, round robin, so an address that queued a hundred guesses
//!   delays a login from another address by about one check, not a hundred.
//!
//! A busy refusal is not a wrong password: the caller reports it as the
//! provider failing (5xx), which does not count towards a ban.
//!
//! The slot is held by the blocking task itself, so a client that gives up
//! (or a provider timeout that cancels the login) does not free the slot
//! before the hash computation it started has finished.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::password::verify_password;

/// The longest a check may wait for a slot before it is refused as busy.
pub const WAIT_LIMIT: Duration = Duration::from_secs(5);

/// Waiting checks per slot before new ones are refused at once.
pub const WAITING_PER_PERMIT: usize = 64;

/// The outcome of a bounded check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    Mismatch,
    /// No slot within the wait limit, or the queue was full: not checked.
    Busy,
}

/// The verification queue shared by a provider's logins.
#[derive(Debug)]
pub struct HashQueue {
    state: Mutex<State>,
    permits: usize,
    max_waiting: usize,
    wait_limit: Duration,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    peak_running: usize,
    waiting: usize,
    next_id: u64,
    /// Waiting checks by client address, oldest first.
    queues: HashMap<IpAddr, VecDeque<Waiter>>,
    /// Addresses with waiting checks, in the order they are served.
    turn: VecDeque<IpAddr>,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    wake: oneshot::Sender<()>,
}

/// A running check's slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub struct Slot {
    queue: Arc<HashQueue>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        HashQueue::hand_on(&mut state);
    }
}

/// A place in the queue.
#[derive(Debug)]
pub struct Ticket {
    queue: Arc<HashQueue>,
    source: IpAddr,
    id: u64,
    wake: oneshot::Receiver<()>,
    granted: bool,
}

impl Ticket {
    /// Waits for a slot, at most the queue's wait limit.
    pub async fn wait(mut self) -> Option<Slot> {
        let limit = self.queue.wait_limit;
        match tokio::time::timeout(limit, &mut self.wake).await {
            Ok(Ok(())) => Some(self.into_slot()),
            // Timed out (or the queue is gone): Drop leaves the queue, or
            // passes on a slot granted in the meantime.
            _ => None,
        }
    }

    /// The slot, if it has been granted already (never waits).
    pub fn try_take(&mut self) -> Option<Slot> {
        match self.wake.try_recv() {
            Ok(()) => {
                self.granted = true;
                Some(Slot {
                    queue: Arc::clone(&self.queue),
                })
            }
            Err(_) => None,
        }
    }

    fn into_slot(mut self) -> Slot {
        self.granted = true;
        Slot {
            queue: Arc::clone(&self.queue),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut guard = self.queue.lock();
        let state = &mut *guard;
        let mut found = false;
        if let Some(waiters) = state.queues.get_mut(&self.source)
            && let Some(at) = waiters.iter().position(|w| w.id == self.id)
        {
            waiters.remove(at);
            found = true;
            if waiters.is_empty() {
                state.queues.remove(&self.source);
                state.turn.retain(|a| *a != self.source);
            }
            state.waiting -= 1;
        }
        if !found {
            // Granted between the timeout and this lock: the slot is ours
            // and unused, so it goes to the next waiter.
            HashQueue::hand_on(state);
        }
    }
}

/// What asking for a slot gives at once.
#[derive(Debug)]
pub enum Entry {
    Granted(Slot),
    Queued(Ticket),
    Busy,
}

impl HashQueue {
    pub fn new(permits: usize, max_waiting: usize, wait_limit: Duration) -> Arc<HashQueue> {
        Arc::new(HashQueue {
            state: Mutex::new(State::default()),
            permits: permits.max(1),
            max_waiting,
            wait_limit,
        })
    }

    /// One slot per core, [`WAITING_PER_PERMIT`] waiters per slot, each
    /// waiting at most `wait_limit` (capped at [`WAIT_LIMIT`]).
    pub fn for_this_machine(wait_limit: Duration) -> Arc<HashQueue> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        HashQueue::new(
            cores,
            cores * WAITING_PER_PERMIT,
            wait_limit.min(WAIT_LIMIT),
        )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement that can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives a finished slot to the next waiter, one address after another.
    fn hand_on(state: &mut State) {
        while let Some(source) = state.turn.pop_front() {
            let Some(waiters) = state.queues.get_mut(&source) else {
                continue;
            };
            let Some(waiter) = waiters.pop_front() else {
                state.queues.remove(&source);
                continue;
            };
            if waiters.is_empty() {
                state.queues.remove(&source);
            } else {
                state.turn.push_back(source);
            }
            state.waiting -= 1;
            // A waiter's ticket leaves the queue under this lock before its
            // receiver goes, so the send fails only if it is being dropped
            // right now; then the next waiter gets the slot.
            if waiter.wake.send(()).is_ok() {
                return;
            }
        }
        state.running -= 1;
    }

    /// A slot now, a place in the queue, or busy.
    pub fn enter(self: &Arc<Self>, source: IpAddr) -> Entry {
        let mut state = self.lock();
        if state.running < self.permits && state.waiting == 0 {
            state.running += 1;
            state.peak_running = state.peak_running.max(state.running);
            return Entry::Granted(Slot {
                queue: Arc::clone(self),
            });
        }
        if state.waiting >= self.max_waiting {
            return Entry::Busy;
        }
        let (tx, rx) = oneshot::channel();
        let id = state.next_id;
        state.next_id += 1;
        let state = &mut *state;
        let waiters = state.queues.entry(source).or_default();
        if waiters.is_empty() {
            state.turn.push_back(source);
        }
        waiters.push_back(Waiter { id, wake: tx });
        state.waiting += 1;
        Entry::Queued(Ticket {
            queue: Arc::clone(self),
            source,
            id,
            wake: rx,
            granted: false,
        })
    }

    async fn slot(self: &Arc<Self>, source: IpAddr) -> Option<Slot> {
        match self.enter(source) {
            Entry::Granted(slot) => Some(slot),
            Entry::Queued(ticket) => ticket.wait().await,
            Entry::Busy => None,
        }
    }

    /// Checks `password` against `hash` (any [`crate::HashScheme`]; an
    /// unusable hash is a mismatch) for a client at `source`.
    pub async fn verify(self: &Arc<Self>, source: IpAddr, password: &str, hash: &str) -> Verdict {
        let Some(slot) = self.slot(source).await else {
            return Verdict::Busy;
        };
        let (password, hash) = (password.to_owned(), hash.to_owned());
        let checked = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            verify_password(&password, &hash)
        })
        .await;
        match checked {
            Ok(true) => Verdict::Match,
            _ => Verdict::Mismatch,
        }
    }

    /// The most checks that ever ran at once.
    pub fn peak_running(&self) -> usize {
        self.lock().peak_running
    }

    /// Checks running and waiting now.
    pub fn load(&self) -> (usize, usize) {
        let state = self.lock();
        (state.running, state.waiting)
    }
}

#[cfg(test)]
mod tests;
