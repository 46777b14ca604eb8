//! `[cluster]`: this node's part of a cluster of `wharf serve` processes
//! over one PostgreSQL database (SPEC section 8): session leases, so that
//! `max_sessions_per_user` counts a user's sessions on every node, and
//! bans that every node applies within a second.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wharf_cluster::{Bans, Claim, Database, LeaseTiming, Leases};
use wharf_listen::{Guard, SharedBans};
use wharf_session::SharedSessions;

use crate::Failure;
use crate::config::ClusterConfig;

/// This node in the cluster.
pub struct Node {
    database: Database,
    node_id: String,
    pub leases: Arc<Leases>,
    bans: std::sync::OnceLock<Arc<Bans>>,
}

struct SessionLeases(Arc<Leases>);

#[async_trait]
impl SharedSessions for SessionLeases {
    async fn claim(
        &self,
        user: &str,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<i64>, String> {
        match self.0.claim(user, session_id, limit).await {
            Ok(Claim::Granted) => Ok(None),
            Ok(Claim::Refused { open }) => Ok(Some(open)),
            Err(e) => Err(e.0),
        }
    }

    fn release(&self, session_id: &str) {
        self.0.release(session_id);
    }
}

struct PublishedBans(Arc<Bans>);

impl SharedBans for PublishedBans {
    fn publish(&self, address: IpAddr, duration: Duration, repeat: u32) {
        self.0.publish(address, duration, repeat);
    }
}

/// The node id: `cluster.node_id`, else the host name.
pub fn node_id(cluster: &ClusterConfig) -> String {
    cluster.node_id.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "wharf".to_owned())
    })
}

impl Node {
    /// Joins the cluster (`None` when there is no cluster database).
    pub async fn join(cluster: Option<&ClusterConfig>) -> Result<Option<Node>, Failure> {
        let Some(cluster) = cluster.filter(|c| !c.database.is_empty()) else {
            return Ok(None);
        };
        let timing = LeaseTiming::default();
        let failure =
            |e: wharf_cluster::ClusterError| Failure::User(format!("cluster.database: {e}"));
        let database = Database::connect(&cluster.database, timing.claim_timeout)
            .await
            .map_err(failure)?;
        let node_id = node_id(cluster);
        let leases = Leases::start(&database, &node_id, timing)
            .await
            .map_err(failure)?;
        Ok(Some(Node {
            database,
            node_id,
            leases,
            bans: std::sync::OnceLock::new(),
        }))
    }

    /// Shares `guard`'s bans with the other nodes, and applies theirs to it
    /// (each within [`Bans::POLL_EVERY`]).
    pub async fn share_bans(&self, guard: &Arc<Guard>) -> Result<(), Failure> {
        let applying = guard.clone();
        let bans = Bans::start(
            &self.database,
            &self.node_id,
            Bans::POLL_EVERY,
            move |ban| {
                if applying.apply_ban(ban.address, ban.remaining, ban.repeat) {
                    tracing::info!(
                        address = %ban.address,
                        node = %ban.node_id,
                        remaining_s = ban.remaining.as_secs(),
                        "applying a ban decided by another node"
                    );
                }
            },
        )
        .await
        .map_err(|e| Failure::User(format!("cluster.database: {e}")))?;
        guard.share_bans(Arc::new(PublishedBans(bans.clone())));
        let _ = self.bans.set(bans);
        Ok(())
    }

    /// What the gateway counts sessions with.
    pub fn shared_sessions(&self) -> Arc<dyn SharedSessions> {
        Arc::new(SessionLeases(self.leases.clone()))
    }

    /// Leaves the cluster: this node's leases removed at once rather than
    /// expiring.
    pub async fn leave(&self) {
        if let Some(bans) = self.bans.get() {
            bans.shutdown();
        }
        self.leases.shutdown().await;
        self.database.close().await;
    }
}
