//! Limits shared by every session of a user and by the whole process:
//! memory for request and transfer buffers (`max_memory_per_user`,
//! `max_memory`) and open files (`max_handles_per_user`).
//!
//! A [`Quota`] is a chain of counters, innermost first (a session channel,
//! its user, the process); taking from it takes from every level, in that
//! order, so two takers never wait on each other in a cycle. Memory is
//! counted in KiB and taken with [`Quota::take`], which waits: a session
//! that has spent its share stops taking client input (its SSH window or
//! TCP window closes), it never buffers beyond it. Handles are taken with
//! [`Quota::try_take`], which refuses at once: the client gets an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Memory is counted in units of this many bytes.
pub const MEMORY_UNIT: usize = 1024;

/// One level: a counter and its size.
#[derive(Debug, Clone)]
struct Level {
    counter: Arc<Semaphore>,
    size: u32,
    /// The most taken at once since [`Quota::take_peak`] last looked.
    peak: Arc<AtomicU64>,
}

impl Level {
    fn in_use(&self) -> u64 {
        u64::from(self.size).saturating_sub(self.counter.available_permits() as u64)
    }

    fn note_peak(&self) {
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
    }
}

/// A chain of counters, innermost first. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Quota {
    levels: Vec<Level>,
}

/// What was taken from a [`Quota`]; given back when dropped.
#[derive(Debug)]
pub struct Taken {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Taken {
    /// Adds `other` to this (taken from the same quota or another: each
    /// counter's share is kept apart and given back to its counter).
    pub fn merge(&mut self, other: Taken) {
        for theirs in other.permits {
            match self
                .permits
                .iter_mut()
                .find(|mine| Arc::ptr_eq(mine.semaphore(), theirs.semaphore()))
            {
                Some(mine) => mine.merge(theirs),
                None => self.permits.push(theirs),
            }
        }
    }
}

fn level(size: u32) -> Level {
    Level {
        counter: Arc::new(Semaphore::new(size as usize)),
        size,
        peak: Arc::new(AtomicU64::new(0)),
    }
}

impl Quota {
    /// A quota of `size` units with no outer level.
    pub fn new(size: u32) -> Quota {
        Quota {
            levels: vec![level(size.max(1))],
        }
    }

    /// A new innermost level of `size` units inside this quota.
    pub fn within(&self, size: u32) -> Quota {
        let mut levels = Vec::with_capacity(self.levels.len() + 1);
        levels.push(level(size.max(1)));
        levels.extend(self.levels.iter().cloned());
        Quota { levels }
    }

    /// Memory: the units for `bytes` (at least one).
    pub fn units_for(bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(MEMORY_UNIT).max(1)).unwrap_or(u32::MAX)
    }

    /// Takes `units` from every level, waiting until each has them (a
    /// request larger than a level takes the whole level). `None` only if
    /// a counter was closed, which this crate never does.
    pub async fn take(&self, units: u32) -> Option<Taken> {
        let mut permits = Vec::with_capacity(self.levels.len());
        for level in &self.levels {
            let n = units.min(level.size);
            permits.push(level.counter.clone().acquire_many_owned(n).await.ok()?);
        }
        if let Some(outer) = self.levels.last() {
            outer.note_peak();
        }
        Some(Taken { permits })
    }

    /// Takes `units` from every level if each has them now, else nothing;
    /// the error is the level that had too few (0 = innermost).
    pub fn try_take(&self, units: u32) -> Result<Taken, usize> {
        let mut permits = Vec::with_capacity(self.levels.len());
        for (i, level) in self.levels.iter().enumerate() {
            match level.counter.clone().try_acquire_many_owned(units) {
                Ok(permit) => permits.push(permit),
                Err(_) => return Err(i),
            }
        }
        if let Some(outer) = self.levels.last() {
            outer.note_peak();
        }
        Ok(Taken { permits })
    }

    /// Units taken at the outermost level (the whole process, for the
    /// gateway's quotas).
    pub fn in_use(&self) -> u64 {
        self.levels.last().map_or(0, Level::in_use)
    }

    /// The most units taken at once at the outermost level since the last
    /// call (and now), then starts over from what is in use now.
    pub fn take_peak(&self) -> u64 {
        self.levels.last().map_or(0, |level| {
            let now = level.in_use();
            level.peak.swap(now, Ordering::Relaxed).max(now)
        })
    }
}

/// Per-user quotas inside a process quota: every session of a user shares
/// its user's level, made when the first session needs it and dropped
/// with the last.
#[derive(Debug)]
pub struct PerUser {
    process: Quota,
    per_user: u32,
    users: Mutex<Users>,
}

#[derive(Debug, Default)]
struct Users {
    /// A user's counter lives as long as a session or a share taken from
    /// it does (permits hold the counter too).
    levels: HashMap<String, Weak<Semaphore>>,
    /// The map is swept of users without sessions when it grows past this
    /// (twice its size after the last sweep): amortised O(1) per login.
    sweep_at: usize,
}

impl PerUser {
    pub fn new(process: u32, per_user: u32) -> PerUser {
        PerUser {
            process: Quota::new(process),
            per_user,
            users: Mutex::new(Users::default()),
        }
    }

    /// The quota of `user`'s sessions (the user's level inside the process's).
    pub fn for_user(&self, user: &str) -> Quota {
        let mut users = self.users.lock();
        let size = self.per_user.max(1);
        let shared = match users.levels.get(user).and_then(Weak::upgrade) {
            Some(counter) => Level {
                counter,
                size,
                peak: Arc::new(AtomicU64::new(0)),
            },
            None => {
                let made = level(size);
                users
                    .levels
                    .insert(user.to_owned(), Arc::downgrade(&made.counter));
                made
            }
        };
        if users.levels.len() > users.sweep_at {
            users.levels.retain(|_, level| level.strong_count() > 0);
            users.sweep_at = (2 * users.levels.len()).max(64);
        }
        drop(users);
        let mut levels = Vec::with_capacity(1 + self.process.levels.len());
        levels.push(shared);
        levels.extend(self.process.levels.iter().cloned());
        Quota { levels }
    }

    /// The process-wide quota.
    pub fn process(&self) -> &Quota {
        &self.process
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_level_bounds_what_is_taken() {
        let users = PerUser::new(10, 6);
        let alice = users.for_user("alice");
        let alice_channel = alice.within(4);
        let a = alice_channel.take(4).await.unwrap();
        // The channel is full; alice's other channel still has room...
        assert!(alice_channel.try_take(1).is_err());
        let other = alice.within(4);
        let b = other.try_take(2).unwrap();
        // ... up to her 6.
        assert_eq!(other.try_take(1).unwrap_err(), 1);
        // Bob is limited by the process: 10 - 6 = 4 left.
        let bob = users.for_user("bob");
        let c = bob.try_take(4).unwrap();
        assert_eq!(bob.try_take(1).unwrap_err(), 1);
        assert_eq!(users.process().in_use(), 10);
        drop((a, b, c));
        assert_eq!(users.process().in_use(), 0);
        assert!(bob.try_take(6).is_ok());
    }

    #[tokio::test]
    async fn sessions_of_a_user_share_one_level() {
        let users = PerUser::new(100, 3);
        let first = users.for_user("alice").take(3).await.unwrap();
        assert!(users.for_user("alice").try_take(1).is_err());
        drop(first);
        assert!(users.for_user("alice").try_take(3).is_ok());
        // A request larger than a level takes the whole level, never waits forever.
        let huge = users.for_user("carol").take(1000).await.unwrap();
        assert_eq!(users.process().in_use(), 100);
        drop(huge);
    }

    #[tokio::test]
    async fn waiting_takers_proceed_when_memory_is_given_back() {
        let quota = Quota::new(2);
        let held = quota.take(2).await.unwrap();
        let waiter = {
            let quota = quota.clone();
            tokio::spawn(async move { quota.take(1).await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn merged_shares_go_back_to_their_own_counters() {
        let users = PerUser::new(100, 50);
        let channel = Quota::new(10);
        let bulk = users.for_user("alice").within(20);
        let mut held = channel.take(4).await.unwrap();
        held.merge(bulk.take(8).await.unwrap());
        held.merge(channel.take(1).await.unwrap());
        assert_eq!(users.process().in_use(), 8);
        assert!(channel.try_take(6).is_err());
        drop(held);
        assert_eq!(users.process().in_use(), 0);
        assert!(channel.try_take(10).is_ok());
    }

    #[test]
    fn memory_units() {
        assert_eq!(Quota::units_for(0), 1);
        assert_eq!(Quota::units_for(1024), 1);
        assert_eq!(Quota::units_for(1025), 2);
    }
}
