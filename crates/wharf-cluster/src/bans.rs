//! Bans shared between nodes: a ban that one node decides is applied by
//! every node within a second (SPEC section 8).
//!
//! A ban is a row per banned address (the ban key: IPv4 /32, IPv6 /64),
//! valid `until` a time of the database's clock, with its `repeat` (1 for
//! the first ban of the address, 2 for the next, ... so the doubling
//! continues on whichever node bans it next). Every
//! [`Bans::POLL_EVERY`] each node reads the rows other nodes changed since
//! its last read and applies them with what is left of them, measured by
//! the database's clock (node clocks may differ). A node that starts reads
//! every ban still running.
//!
//! Reads overlap by [`OVERLAP`], so a row committed just after a read that
//! ran past its `changed_at` is still seen: applying a ban twice is
//! harmless. Rows are removed a while after their ban ends. The table
//! grows with the addresses banned, not with failures: each row took
//! `ban_after_failures` failed logins.
//!
//! The database down: a ban is logged and stays local to the node that
//! decided it; reads are retried at the next tick.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;
use sqlx::{Executor, Row};
use tokio::task::JoinHandle;

use crate::{ClusterError, Database};

/// How far back each read looks past the previous one.
const OVERLAP: Duration = Duration::from_secs(2);
/// Reads between two removals of ended bans.
const CLEAN_EVERY: u32 = 240;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS wharf_bans (
    address TEXT PRIMARY KEY,
    until TIMESTAMPTZ NOT NULL,
    repeat INTEGER NOT NULL,
    node_id TEXT NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS wharf_bans_by_change ON wharf_bans (changed_at);
";

/// A ban another node decided, as this node applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteBan {
    pub address: IpAddr,
    /// What is left of the ban.
    pub remaining: Duration,
    pub repeat: u32,
    /// The node that decided it.
    pub node_id: String,
}

/// The shared bans of one node.
pub struct Bans {
    pool: PgPool,
    node_id: String,
    reader: JoinHandle<()>,
}

impl fmt::Debug for Bans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bans")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Bans {
    /// How often a node reads the bans of the others.
    pub const POLL_EVERY: Duration = Duration::from_millis(250);

    /// Creates the table if needed and starts reading the other nodes'
    /// bans every `poll_every`, each handed to `apply` (from the reading
    /// task: it must not block).
    pub async fn start(
        database: &Database,
        node_id: &str,
        poll_every: Duration,
        apply: impl Fn(RemoteBan) + Send + Sync + 'static,
    ) -> Result<Arc<Bans>, ClusterError> {
        let pool = database.pool().clone();
        pool.execute(sqlx::raw_sql(SCHEMA))
            .await
            .map_err(|e| ClusterError(format!("cannot create the ban table: {e}")))?;
        let reader = tokio::spawn(read(pool.clone(), node_id.to_owned(), poll_every, apply));
        Ok(Arc::new(Bans {
            pool,
            node_id: node_id.to_owned(),
            reader,
        }))
    }

    /// Shares a ban this node decided (in the background: a login never
    /// waits for the database). A longer ban or a higher repeat already
    /// there is kept.
    pub fn publish(self: &Arc<Self>, address: IpAddr, duration: Duration, repeat: u32) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let bans = self.clone();
        runtime.spawn(async move {
            let written = sqlx::query(
                "INSERT INTO wharf_bans (address, until, repeat, node_id, changed_at)
                 VALUES ($1, now() + make_interval(secs => $2), $3, $4, clock_timestamp())
                 ON CONFLICT (address) DO UPDATE SET
                     until = GREATEST(wharf_bans.until, EXCLUDED.until),
                     repeat = GREATEST(wharf_bans.repeat, EXCLUDED.repeat),
                     node_id = EXCLUDED.node_id,
                     changed_at = EXCLUDED.changed_at",
            )
            .bind(address.to_string())
            .bind(duration.as_secs_f64())
            .bind(i32::try_from(repeat).unwrap_or(i32::MAX))
            .bind(&bans.node_id)
            .execute(&bans.pool)
            .await;
            if let Err(e) = written {
                tracing::warn!(%address, error = %e, "could not share a ban with the other nodes; it holds on this node only");
            }
        });
    }

    /// Stops reading (the database is closed by its owner).
    pub fn shutdown(&self) {
        self.reader.abort();
    }
}

impl Drop for Bans {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Every `poll_every`: the bans other nodes changed since the last read
/// (all running ones at the first), applied.
async fn read(
    pool: PgPool,
    node_id: String,
    poll_every: Duration,
    apply: impl Fn(RemoteBan) + Send + Sync + 'static,
) {
    let mut tick = tokio::time::interval(poll_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Seconds since the epoch of the database's clock; none at first.
    let mut since: Option<f64> = None;
    let mut reads = 0u32;
    // Whether the last read failed: a database that stays down is logged
    // once, not four times a second, and its return once.
    let mut failing = false;
    loop {
        tick.tick().await;
        match read_once(&pool, &node_id, since).await {
            Ok((now, bans)) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("reading the other nodes' bans again");
                }
                since = Some(now - OVERLAP.as_secs_f64());
                for ban in bans {
                    apply(ban);
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(error = %e, "cannot read the other nodes' bans; retrying every {poll_every:?}, bans decided here still hold here");
                }
                continue;
            }
        }
        reads = reads.wrapping_add(1);
        if reads.is_multiple_of(CLEAN_EVERY) {
            let cleaned = sqlx::query(
                "DELETE FROM wharf_bans WHERE until < now() - make_interval(secs => $1)",
            )
            .bind(OVERLAP.as_secs_f64() * 2.0)
            .execute(&pool)
            .await;
            if let Err(e) = cleaned {
                tracing::warn!(error = %e, "could not remove ended bans");
            }
        }
    }
}

/// One read: the database's time, and the running bans of other nodes
/// changed after `since` (every running one without it).
async fn read_once(
    pool: &PgPool,
    node_id: &str,
    since: Option<f64>,
) -> Result<(f64, Vec<RemoteBan>), sqlx::Error> {
    let mut connection = pool.acquire().await?;
    let now: f64 = sqlx::query("SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8")
        .fetch_one(&mut *connection)
        .await?
        .try_get(0)?;
    let rows = sqlx::query(
        "SELECT address, repeat, node_id,
                EXTRACT(EPOCH FROM (until - clock_timestamp()))::float8 AS remaining
         FROM wharf_bans
         WHERE node_id <> $1 AND until > clock_timestamp()
           AND ($2::float8 IS NULL OR changed_at > to_timestamp($2))",
    )
    .bind(node_id)
    .bind(since)
    .fetch_all(&mut *connection)
    .await?;
    let mut bans = Vec::with_capacity(rows.len());
    for row in rows {
        let address: String = row.try_get("address")?;
        // Rows are written by wharf nodes only; one that does not parse is
        // skipped rather than trusted.
        let Ok(address) = address.parse::<IpAddr>() else {
            tracing::warn!(%address, "ignoring a ban whose address does not parse");
            continue;
        };
        let remaining: f64 = row.try_get("remaining")?;
        let repeat: i32 = row.try_get("repeat")?;
        bans.push(RemoteBan {
            address,
            remaining: Duration::try_from_secs_f64(remaining).unwrap_or_default(),
            repeat: u32::try_from(repeat).unwrap_or(1).max(1),
            node_id: row.try_get("node_id")?,
        });
    }
    Ok((now, bans))
}
