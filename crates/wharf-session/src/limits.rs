//! What one user and the whole process may hold: sessions per user (a
//! slot each, given back when the session ends), buffer memory and open
//! files (shares of [`PerUser`](wharf_vfs::PerUser) quotas), and the levels reported to the
//! metrics.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use wharf_identity::Denial;

use crate::Gateway;

/// What one user and the whole process may hold (SPEC 2, `[server]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// 0 = unlimited.
    pub max_sessions_per_user: usize,
    /// Request and transfer buffers of all of a user's sessions, in bytes.
    pub max_memory_per_user: u64,
    /// The same for the whole process.
    pub max_memory: u64,
    /// Open files and listings of all of a user's sessions.
    pub max_handles_per_user: u32,
    /// The same for the whole process: what the file-descriptor limit
    /// leaves after a reserve for connections and logins.
    pub max_handles: u32,
}

impl Default for Limits {
    /// SPEC's defaults (and a process handle cap for 64 Ki descriptors).
    fn default() -> Limits {
        Limits {
            max_sessions_per_user: 0,
            max_memory_per_user: 128 << 20,
            max_memory: 1 << 30,
            max_handles_per_user: 1024,
            max_handles: 60_000,
        }
    }
}

pub(crate) fn memory_units(bytes: u64) -> u32 {
    u32::try_from(bytes / wharf_vfs::MEMORY_UNIT as u64).unwrap_or(u32::MAX)
}

/// A user's sessions counted on every node of a cluster (`[cluster]
/// database`, SPEC section 8): a lease per session.
#[async_trait]
pub trait SharedSessions: Send + Sync + 'static {
    /// Claims a lease for `session_id` if `user` has fewer than `limit`
    /// sessions on the cluster: `Ok(None)` granted, `Ok(Some(open))`
    /// refused with the user's open sessions, `Err` when the cluster
    /// cannot be asked (the login is refused: the limit cannot be checked).
    async fn claim(
        &self,
        user: &str,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<i64>, String>;
    /// Ends the lease of a session that ended (never waits).
    fn release(&self, session_id: &str);
}

pub(crate) struct SessionSlot {
    user: String,
    sessions: Arc<Mutex<HashMap<String, usize>>>,
    /// The session's cluster lease, if any.
    lease: Option<(Arc<dyn SharedSessions>, String)>,
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if let Some((shared, session_id)) = self.lease.take() {
            shared.release(&session_id);
        }
        let mut sessions = self.sessions.lock();
        if let Some(count) = sessions.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                sessions.remove(&self.user);
            }
        }
    }
}

impl Gateway {
    /// Buffer memory in use by every session, in bytes (for metrics).
    pub fn memory_in_use(&self) -> u64 {
        self.memory.process().in_use() * wharf_vfs::MEMORY_UNIT as u64
    }

    /// The most buffer memory in use at once since the last call, in bytes.
    pub fn memory_peak(&self) -> u64 {
        self.memory.process().take_peak() * wharf_vfs::MEMORY_UNIT as u64
    }

    /// Open files and listings of every session (for metrics).
    pub fn handles_in_use(&self) -> u64 {
        self.handles.process().in_use()
    }

    /// A slot in `max_sessions_per_user`: on this node, then, with a
    /// cluster, on every node (a lease).
    pub(crate) async fn claim_slot(
        &self,
        user: &str,
        session_id: &str,
    ) -> Result<SessionSlot, Denial> {
        let mut slot = {
            let mut sessions = self.sessions.lock();
            let count = sessions.entry(user.to_owned()).or_insert(0);
            if self.max_sessions_per_user > 0 && *count >= self.max_sessions_per_user {
                return Err(Denial::new(format!(
                    "user {user:?} already has {} sessions (max_sessions_per_user)",
                    *count
                )));
            }
            *count += 1;
            SessionSlot {
                user: user.to_owned(),
                sessions: self.sessions.clone(),
                lease: None,
            }
        };
        if let Some(shared) = self.shared_sessions.as_ref()
            && self.max_sessions_per_user > 0
        {
            // One lease per login: a connection that logs in again (FTP)
            // gets a new one, which the old one's release cannot remove.
            let lease = format!("{session_id}.{:016x}", rand::random::<u64>());
            match shared.claim(user, &lease, self.max_sessions_per_user).await {
                Ok(None) => slot.lease = Some((shared.clone(), lease)),
                Ok(Some(open)) => {
                    return Err(Denial::new(format!(
                        "user {user:?} already has {open} sessions on the cluster (max_sessions_per_user)"
                    )));
                }
                Err(e) => {
                    return Err(Denial::new(format!(
                        "max_sessions_per_user cannot be checked: {e}"
                    )));
                }
            }
        }
        Ok(slot)
    }

    /// Counts sessions on every node of a cluster too.
    pub fn with_shared_sessions(mut self, shared: Arc<dyn SharedSessions>) -> Gateway {
        self.shared_sessions = Some(shared);
        self
    }
}
