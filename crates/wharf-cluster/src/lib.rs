//! State that several `wharf serve` nodes share through the `[cluster]`
//! database (SPEC section 8):
//!
//! - **Session leases** ([`Leases`]): one row per open session, renewed by
//!   its node, so that `max_sessions_per_user` counts a user's sessions on
//!   every node and a dead node's sessions stop counting within 30 s.
//! - **Bans** ([`Bans`]): a ban that one node decides is written to the
//!   database and applied by every other node within a second.
//!
//! Both use one [`Database`] (a small pool) per node. The database down:
//! claims are refused (fail closed), bans stay local to the node that
//! decided them until it is back, renewals and polls are retried.

mod bans;
mod leases;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _};

pub use self::bans::{Bans, RemoteBan};
pub use self::leases::{Claim, LeaseTiming, Leases};

/// A problem with the cluster database, for the log and the operator;
/// never holds the database password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError(pub String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

/// The connections of one node to the cluster database, shared by its
/// leases and its bans.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

impl Database {
    /// Connects to `database` (a `postgres://` URL); a connection is waited
    /// for at most `acquire_timeout` whenever one is needed.
    pub async fn connect(
        database: &str,
        acquire_timeout: Duration,
    ) -> Result<Database, ClusterError> {
        let options = PgConnectOptions::from_str(database)
            .map_err(|e| ClusterError(format!("cluster.database is not a PostgreSQL URL: {e}")))?
            .application_name("wharf-cluster");
        // One connection first: a pool that cannot connect reports only
        // that it timed out, where this says why (refused, bad password...).
        let probe = tokio::time::timeout(acquire_timeout, options.connect())
            .await
            .map_err(|_| {
                ClusterError(format!(
                    "cannot reach the cluster database: no answer within {acquire_timeout:?}"
                ))
            })?
            .map_err(|e| ClusterError(format!("cannot reach the cluster database: {e}")))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| ClusterError(format!("cannot reach the cluster database: {e}")))?;
        Ok(Database { pool })
    }

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection (after the leases and bans have stopped).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
