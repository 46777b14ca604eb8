//! Session leases, so that `max_sessions_per_user` counts a user's sessions
//! on every node.
//!
//! A lease is a row per open session (`session_id`, `node_id`, `username`,
//! `expires_at`). A node renews its live sessions' leases every
//! [`LeaseTiming::renew_every`] (10 s) to [`LeaseTiming::ttl`] (30 s) ahead,
//! so a node that dies stops renewing and its leases are gone within the
//! TTL; a node that starts removes the leases its previous life left. A
//! claim takes a transaction-scoped advisory lock on the user name, drops
//! that user's expired leases, counts the rest and inserts its own if the
//! count is under the limit: two nodes cannot both take the last slot.
//!
//! Failure: a claim that cannot reach the database within
//! [`LeaseTiming::claim_timeout`] is refused (fail closed: the limit cannot
//! be checked); renewals that fail are logged and retried at the next tick
//! (past the TTL, other nodes stop counting this node's sessions).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::{Executor, Row};
use tokio::task::JoinHandle;

use crate::{ClusterError, Database};

/// How leases are timed.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How far ahead a lease is valid.
    pub ttl: Duration,
    /// How often a node renews its leases.
    pub renew_every: Duration,
    /// The longest a claim may wait for the database.
    pub claim_timeout: Duration,
}

impl Default for LeaseTiming {
    fn default() -> LeaseTiming {
        LeaseTiming {
            ttl: Duration::from_secs(30),
            renew_every: Duration::from_secs(10),
            claim_timeout: Duration::from_secs(3),
        }
    }
}

/// The outcome of a claim.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The session holds a lease until it is released.
    Granted,
    /// The user already has `open` sessions on the cluster.
    Refused { open: i64 },
}

/// The session leases of one node.
pub struct Leases {
    pool: PgPool,
    node_id: String,
    /// The leases this node holds for live sessions: only these are
    /// renewed, so a lease whose claim was abandoned half-way (the client
    /// went away while the claim was in flight) expires with its TTL.
    live: Arc<Mutex<HashSet<String>>>,
    timing: LeaseTiming,
    renewer: JoinHandle<()>,
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("node_id", &self.node_id)
            .field("timing", &self.timing)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wharf_session_leases (
    session_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    username TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS wharf_session_leases_by_user
    ON wharf_session_leases (username);
";

impl Leases {
    /// Creates the table if needed, drops what this node's previous life
    /// left, and starts renewing. Claims wait for a connection of
    /// `database` at most its acquire timeout, and for the whole claim at
    /// most `timing.claim_timeout`.
    pub async fn start(
        database: &Database,
        node_id: &str,
        timing: LeaseTiming,
    ) -> Result<Arc<Leases>, ClusterError> {
        let pool = database.pool().clone();
        pool.execute(sqlx::raw_sql(SCHEMA))
            .await
            .map_err(|e| ClusterError(format!("cannot create the lease table: {e}")))?;
        sqlx::query("DELETE FROM wharf_session_leases WHERE node_id = $1")
            .bind(node_id)
            .execute(&pool)
            .await
            .map_err(|e| ClusterError(format!("cannot clear this node's old leases: {e}")))?;
        let live = Arc::new(Mutex::new(HashSet::new()));
        let renewer = tokio::spawn(renew(
            pool.clone(),
            node_id.to_owned(),
            live.clone(),
            timing,
        ));
        Ok(Arc::new(Leases {
            pool,
            node_id: node_id.to_owned(),
            live,
            timing,
            renewer,
        }))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Claims a lease for `session_id` of `username` if the user has fewer
    /// than `limit` live leases on the cluster.
    pub async fn claim(
        &self,
        username: &str,
        session_id: &str,
        limit: usize,
    ) -> Result<Claim, ClusterError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let claim = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM wharf_session_leases WHERE username = $1 AND expires_at < now()",
            )
            .bind(username)
            .execute(&mut *tx)
            .await?;
            let open: i64 =
                sqlx::query("SELECT count(*) FROM wharf_session_leases WHERE username = $1")
                    .bind(username)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
            if open >= limit {
                tx.rollback().await?;
                return Ok(Claim::Refused { open });
            }
            sqlx::query(
                "INSERT INTO wharf_session_leases (session_id, node_id, username, expires_at)
                 VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
            )
            .bind(session_id)
            .bind(&self.node_id)
            .bind(username)
            .bind(self.timing.ttl.as_secs_f64())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(session_id.to_owned());
            Ok::<_, sqlx::Error>(Claim::Granted)
        };
        match tokio::time::timeout(self.timing.claim_timeout, claim).await {
            Ok(Ok(claim)) => Ok(claim),
            Ok(Err(e)) => Err(ClusterError(format!("session lease: {e}"))),
            Err(_) => Err(ClusterError(format!(
                "session lease: the cluster database did not answer within {:?}",
                self.timing.claim_timeout
            ))),
        }
    }

    /// Ends a lease (in the background: a session's end never waits for
    /// the database; a release that fails expires with the TTL).
    pub fn release(self: &Arc<Self>, session_id: &str) {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session_id);
        // A session dropped outside the runtime (a process that is ending)
        // leaves its lease to expire.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let leases = self.clone();
        let session_id = session_id.to_owned();
        runtime.spawn(async move {
            let released = sqlx::query("DELETE FROM wharf_session_leases WHERE session_id = $1")
                .bind(&session_id)
                .execute(&leases.pool)
                .await;
            if let Err(e) = released {
                tracing::warn!(%session_id, error = %e, "could not release a session lease; it expires with its TTL");
            }
        });
    }

    /// Stops renewing and removes this node's leases (a clean shutdown; the
    /// database is closed by its owner).
    pub async fn shutdown(&self) {
        self.renewer.abort();
        let _ = sqlx::query("DELETE FROM wharf_session_leases WHERE node_id = $1")
            .bind(&self.node_id)
            .execute(&self.pool)
            .await;
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Every `renew_every`: this node's live leases valid `ttl` ahead again.
async fn renew(
    pool: PgPool,
    node_id: String,
    live: Arc<Mutex<HashSet<String>>>,
    timing: LeaseTiming,
) {
    let mut tick = tokio::time::interval(timing.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids: Vec<String> = live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let renewed = sqlx::query(
            "UPDATE wharf_session_leases SET expires_at = now() + make_interval(secs => $2)
             WHERE node_id = $1 AND session_id = ANY($3)",
        )
        .bind(&node_id)
        .bind(timing.ttl.as_secs_f64())
        .bind(ids)
        .execute(&pool)
        .await;
        if let Err(e) = renewed {
            tracing::warn!(error = %e, "could not renew this node's session leases");
        }
    }
}
