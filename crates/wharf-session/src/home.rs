//! What an identity's sessions are made of: the namespace of its home
//! (PATH: every store by name; LOGICAL: its mappings), the role it runs as,
//! and the [`PolicyAuthorizer`] of its policies.

use std::sync::Arc;

use wharf_identity::{Denial, Home, Identity};
use wharf_vfs::{Mount, MountKind, Namespace, StoreHandle, Target, VirtualPath};

use crate::{ConnInfo, DEFAULT_ROLE_ARN, Gateway, PolicyAuthorizer, SessionFacts};

impl Gateway {
    /// The session's namespace as text: home and mappings (`wharf test-idp`).
    pub fn describe_home(&self, identity: &Identity) -> serde_json::Value {
        match &identity.home {
            Home::Path { .. } => serde_json::json!({
                "HomeDirectoryType": "PATH",
                "HomeDirectory": identity.home.display(),
            }),
            Home::Logical(entries) => serde_json::json!({
                "HomeDirectoryType": "LOGICAL",
                "Mappings": entries.iter().map(|e| serde_json::json!({
                    "Entry": e.entry,
                    "Target": if e.prefix.is_empty() { format!("/{}", e.store) } else { format!("/{}/{}", e.store, e.prefix) },
                    "Type": if e.is_file { "FILE" } else { "DIRECTORY" },
                })).collect::<Vec<_>>(),
            }),
        }
    }

    /// The role ARN a session runs as.
    pub fn role_arn(&self, identity: &Identity) -> &str {
        identity
            .role
            .as_ref()
            .and_then(|name| self.roles.get(name))
            .map(|role| role.arn.as_str())
            .unwrap_or(DEFAULT_ROLE_ARN)
    }

    /// The authorizer of an identity's sessions (also `wharf policy simulate`).
    pub fn authorizer(
        &self,
        identity: &Identity,
        conn: &ConnInfo,
    ) -> Result<PolicyAuthorizer, Denial> {
        let (_, targets) = self.namespace(identity)?;
        let role = match &identity.role {
            None => None,
            Some(name) => Some(
                self.roles
                    .get(name)
                    .ok_or_else(|| Denial::new(format!("role {name:?} is not configured")))?,
            ),
        };
        let facts = SessionFacts {
            source_ip: conn.source_ip,
            secure_transport: conn.secure_transport,
            protocol: conn.protocol.as_str(),
        };
        PolicyAuthorizer::new(
            identity,
            role,
            &targets,
            self.bucket_policies.clone(),
            &facts,
        )
        .map_err(Denial::new)
    }

    fn store(&self, name: &str) -> Result<Arc<StoreHandle>, Denial> {
        self.stores
            .get(name)
            .cloned()
            .ok_or_else(|| Denial::new(format!("store {name:?} is not configured")))
    }

    /// The mounts and default-role targets of a home directory.
    pub(crate) fn namespace(
        &self,
        identity: &Identity,
    ) -> Result<(Namespace, Vec<Target>), Denial> {
        let path = |text: &str| {
            VirtualPath::parse(text).map_err(|e| Denial::new(format!("home directory: {e}")))
        };
        match &identity.home {
            Home::Path { store, prefix } => {
                // PATH: real paths; every store is reachable by name, the
                // policy decides what the user may do there.
                let mut mounts = Vec::with_capacity(self.stores.len());
                for (name, handle) in &self.stores {
                    mounts.push(Mount {
                        entry: path(&format!("/{name}"))?,
                        store: handle.clone(),
                        prefix: String::new(),
                        kind: MountKind::Directory,
                        inner_anchor: (name == store && !prefix.is_empty()).then(|| prefix.clone()),
                    });
                }
                let home = path(&identity.home.display())?;
                let targets = vec![Target {
                    store: store.clone(),
                    prefix: prefix.clone(),
                    is_file: false,
                }];
                Ok((Namespace::new(mounts, home), targets))
            }
            Home::Logical(entries) => {
                let mut mounts = Vec::with_capacity(entries.len());
                let mut targets = Vec::with_capacity(entries.len());
                for entry in entries {
                    mounts.push(Mount {
                        entry: path(&entry.entry)?,
                        store: self.store(&entry.store)?,
                        prefix: entry.prefix.clone(),
                        kind: if entry.is_file {
                            MountKind::File
                        } else {
                            MountKind::Directory
                        },
                        inner_anchor: None,
                    });
                    targets.push(Target {
                        store: entry.store.clone(),
                        prefix: entry.prefix.clone(),
                        is_file: entry.is_file,
                    });
                }
                Ok((Namespace::new(mounts, VirtualPath::root()), targets))
            }
        }
    }
}
