//! The bounded bookkeeping of the guard: a sliding-window count of
//! failures (fixed memory whatever `ban_after_failures` is) and a map that
//! drops its least useful entries when full.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sliding-window failure count.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    start: Instant,
    current: u32,
    previous: u32,
}

impl Window {
    pub(super) fn new(now: Instant) -> Window {
        Window {
            start: now,
            current: 0,
            previous: 0,
        }
    }

    /// Moves the window to `now` and returns the estimated count of the last
    /// `length`.
    pub(super) fn estimate(&mut self, now: Instant, length: Duration) -> f64 {
        let length = length.max(Duration::from_millis(1));
        let mut elapsed = now.saturating_duration_since(self.start);
        if elapsed >= length * 2 {
            *self = Window::new(now);
            elapsed = Duration::ZERO;
        } else if elapsed >= length {
            self.previous = self.current;
            self.current = 0;
            self.start += length;
            elapsed -= length;
        }
        let overlap = 1.0 - elapsed.as_secs_f64() / length.as_secs_f64();
        f64::from(self.current) + f64::from(self.previous) * overlap
    }

    pub(super) fn add(&mut self, now: Instant, length: Duration) -> f64 {
        self.estimate(now, length);
        self.current = self.current.saturating_add(1);
        self.estimate(now, length)
    }
}

/// A map bounded to [`MAX_ENTRIES`](super::MAX_ENTRIES): when full, an eighth of the entries,
/// those `keep` scores lowest, are dropped (amortised O(1) per insert).
pub(super) struct Table<K, V> {
    pub(super) map: HashMap<K, V>,
    max: usize,
}

impl<K: Eq + Hash + Clone, V> Table<K, V> {
    pub(super) fn new(max: usize) -> Table<K, V> {
        Table {
            map: HashMap::new(),
            max: max.max(8),
        }
    }

    pub(super) fn entry(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
        keep: impl Fn(&V) -> (bool, Instant),
    ) -> &mut V {
        if !self.map.contains_key(&key) && self.map.len() >= self.max {
            let mut scored: Vec<(K, (bool, Instant))> =
                self.map.iter().map(|(k, v)| (k.clone(), keep(v))).collect();
            scored.sort_by_key(|entry| entry.1);
            for (k, _) in scored.into_iter().take(self.max / 8) {
                self.map.remove(&k);
            }
        }
        self.map.entry(key).or_insert_with(make)
    }
}
