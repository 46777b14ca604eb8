//! `[cluster]`: this node's part of a cluster of `wharf serve` processes
//! over one PostgreSQL database (SPEC section 8). Today: session leases,
//! so that `max_sessions_per_user` counts a user's sessions on every node.

use std::sync::Arc;

use async_trait::async_trait;
use wharf_cluster::{Claim, LeaseTiming, Leases};
use wharf_session::SharedSessions;

use crate::Failure;
use crate::config::ClusterConfig;

/// This node in the cluster.
pub struct Node {
    pub leases: Arc<Leases>,
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
        let leases = Leases::start(&cluster.database, &node_id(cluster), LeaseTiming::default())
            .await
            .map_err(|e| Failure::User(format!("cluster.database: {e}")))?;
        Ok(Some(Node { leases }))
    }

    /// What the gateway counts sessions with.
    pub fn shared_sessions(&self) -> Arc<dyn SharedSessions> {
        Arc::new(SessionLeases(self.leases.clone()))
    }

    /// Leaves the cluster: this node's leases removed at once rather than
    /// expiring.
    pub async fn leave(&self) {
        self.leases.shutdown().await;
    }
}
