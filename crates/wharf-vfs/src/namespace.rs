//! A user's namespace: which visible paths lead to which store keys.
//!
//! Built once at login from the home directory (PATH or LOGICAL). Pure: no
//! I/O. Resolution is longest-entry-wins; the visible tree is the union of
//! the entries, with the directories above them synthesised.

use std::collections::BTreeMap;
use std::sync::Arc;

use wharf_storage::{Key, Store};

use crate::path::VirtualPath;

/// A configured store with its NAME.
pub struct StoreHandle {
    pub name: String,
    pub store: Arc<dyn Store>,
}

impl StoreHandle {
    /// Waits until the store has nothing running in the background (see
    /// `Store::quiesce`).
    pub async fn quiesce(&self) {
        self.store.quiesce().await;
    }
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreHandle({})", self.name)
    }
}

/// What an entry maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Directory,
    File,
}

/// One mapping from a visible entry to a store prefix.
#[derive(Debug, Clone)]
pub struct Mount {
    pub entry: VirtualPath,
    pub store: Arc<StoreHandle>,
    /// The key prefix in the store ("" for its root); for a FILE mount, the
    /// object's key.
    pub prefix: String,
    pub kind: MountKind,
    /// A prefix below `prefix` that keys inside it are anchored at instead
    /// (PATH mode: the home directory, so symlinks in it stay in it).
    pub inner_anchor: Option<String>,
}

impl Mount {
    /// True for the entry of a directory mapping itself (`is_mount_point`
    /// from [`Resolved::Object`]): a directory, whatever lies at its key.
    pub fn is_directory_entry(&self, is_mount_point: bool) -> bool {
        is_mount_point && self.kind == MountKind::Directory
    }
}

/// Where a visible path leads.
#[derive(Debug)]
pub enum Resolved<'a> {
    /// Inside a mount.
    Object {
        mount: &'a Mount,
        key: Key,
        /// The path is the mount's entry itself.
        is_mount_point: bool,
    },
    /// A directory that exists only because entries lie below it.
    Virtual,
    /// Nothing is mapped here.
    Unmapped,
}

/// Why a path has no key (too long once mapped, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

fn join_key(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}/{rest}"),
    }
}

fn inside(key: &str, prefix: &str) -> Option<usize> {
    if prefix.is_empty() {
        return Some(0);
    }
    if key == prefix || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'/'))
    {
        Some(prefix.len())
    } else {
        None
    }
}

/// The key of a FILE mapping's object, anchored at its directory (a store
/// anchors keys at directories: a filesystem opens the anchor as one).
pub fn file_key(prefix: &str) -> Result<Key, wharf_storage::Error> {
    match prefix.rsplit_once('/') {
        Some((dir, name)) => Key::anchored(dir, name),
        None => Key::anchored("", prefix),
    }
}

/// The mounts of one session.
#[derive(Debug, Clone)]
pub struct Namespace {
    /// Sorted by entry depth, deepest first, so the first match is the
    /// longest.
    mounts: Vec<Mount>,
    home: VirtualPath,
}

impl Namespace {
    /// `mounts` must have unique entries (the identity layer validates that).
    pub fn new(mut mounts: Vec<Mount>, home: VirtualPath) -> Namespace {
        mounts.sort_by_key(|m| std::cmp::Reverse(m.entry.segments().count()));
        Namespace { mounts, home }
    }

    /// Where the session starts.
    pub fn home(&self) -> &VirtualPath {
        &self.home
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Maps a visible path to a store key, a virtual directory, or nothing.
    pub fn resolve(&self, path: &VirtualPath) -> Result<Resolved<'_>, KeyError> {
        for mount in &self.mounts {
            let Some(rest) = path.strip_prefix(&mount.entry) else {
                continue;
            };
            if mount.kind == MountKind::File {
                if !rest.is_empty() {
                    return Ok(Resolved::Unmapped);
                }
                return Ok(Resolved::Object {
                    mount,
                    key: file_key(&mount.prefix).map_err(|e| KeyError(e.message))?,
                    is_mount_point: true,
                });
            }
            let full = join_key(&mount.prefix, rest);
            let (anchor, below) = match &mount.inner_anchor {
                Some(anchor) if inside(&full, anchor).is_some() => {
                    let at = inside(&full, anchor).unwrap_or(0);
                    (anchor.as_str(), full[at..].trim_start_matches('/'))
                }
                _ => (mount.prefix.as_str(), rest),
            };
            let key = Key::anchored(anchor, below).map_err(|e| KeyError(e.message))?;
            return Ok(Resolved::Object {
                mount,
                key,
                is_mount_point: rest.is_empty(),
            });
        }
        if self.mounts.iter().any(|m| m.entry.starts_with(path)) {
            Ok(Resolved::Virtual)
        } else {
            Ok(Resolved::Unmapped)
        }
    }

    /// The entries directly below `dir` that come from deeper mounts: their
    /// names, and whether each is a FILE mount (else a directory).
    pub fn virtual_children(&self, dir: &VirtualPath) -> BTreeMap<String, Option<&Mount>> {
        let mut children = BTreeMap::new();
        for mount in &self.mounts {
            if mount.entry == *dir {
                continue;
            }
            let Some(rest) = mount.entry.strip_prefix(dir) else {
                continue;
            };
            let mut parts = rest.splitn(2, '/');
            let Some(name) = parts.next() else { continue };
            let direct = parts.next().is_none();
            let value = if direct { Some(mount) } else { None };
            children
                .entry(name.to_owned())
                .and_modify(|v: &mut Option<&Mount>| {
                    if direct {
                        *v = value;
                    }
                })
                .or_insert(value);
        }
        children
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use async_trait::async_trait;
    use proptest::prelude::*;
    use wharf_storage::{Capabilities, Lister, Meta, Reader, Result, Writer};

    struct NoStore;
    #[async_trait]
    impl Store for NoStore {
        fn capabilities(&self) -> Capabilities {
            Capabilities {
                random_write: false,
                rename_directory: false,
                set_times: false,
            }
        }
        async fn head(&self, _: &Key) -> Result<Option<Meta>> {
            Ok(None)
        }
        async fn list(&self, _: &Key) -> Result<Box<dyn Lister>> {
            Err(wharf_storage::Error::unsupported("test"))
        }
        async fn open_read(&self, _: &Key) -> Result<Box<dyn Reader>> {
            Err(wharf_storage::Error::unsupported("test"))
        }
        async fn open_write(&self, _: &Key) -> Result<Box<dyn Writer>> {
            Err(wharf_storage::Error::unsupported("test"))
        }
        async fn delete(&self, _: &Key) -> Result<()> {
            Ok(())
        }
        async fn create_dir(&self, _: &Key) -> Result<()> {
            Ok(())
        }
        async fn delete_dir(&self, _: &Key) -> Result<()> {
            Ok(())
        }
        async fn copy(&self, _: &Key, _: &Key) -> Result<()> {
            Ok(())
        }
    }

    fn store(name: &str) -> Arc<StoreHandle> {
        Arc::new(StoreHandle {
            name: name.into(),
            store: Arc::new(NoStore),
        })
    }

    fn p(s: &str) -> VirtualPath {
        VirtualPath::parse(s).unwrap()
    }

    fn mount(entry: &str, store_name: &str, prefix: &str, kind: MountKind) -> Mount {
        Mount {
            entry: p(entry),
            store: store(store_name),
            prefix: prefix.into(),
            kind,
            inner_anchor: None,
        }
    }

    fn logical() -> Namespace {
        Namespace::new(
            vec![
                mount("/", "default", "home/alice", MountKind::Directory),
                mount("/reports", "reports", "2026/alice", MountKind::Directory),
                mount("/shared/team", "shared", "", MountKind::Directory),
                mount("/readme.txt", "pub", "docs/readme.txt", MountKind::File),
                mount("/deep/a/b", "default", "deep", MountKind::Directory),
            ],
            p("/"),
        )
    }

    /// What a path resolves to, as "store:anchor|rest", "virtual" or "unmapped".
    #[track_caller]
    fn check(ns: &Namespace, path: &str, expected: &str) {
        let got = match ns.resolve(&p(path)).unwrap() {
            Resolved::Object { mount, key, .. } => {
                format!("{}:{}|{}", mount.store.name, key.anchor(), key.rest())
            }
            Resolved::Virtual => "virtual".into(),
            Resolved::Unmapped => "unmapped".into(),
        };
        assert_eq!(got, expected, "{path}");
    }

    #[test]
    fn logical_mappings_resolve_longest_entry_first() {
        let ns = logical();
        check(&ns, "/", "default:home/alice|");
        check(&ns, "/a.txt", "default:home/alice|a.txt");
        check(&ns, "/x/y", "default:home/alice|x/y");
        check(&ns, "/reports", "reports:2026/alice|");
        check(&ns, "/reports/q1.csv", "reports:2026/alice|q1.csv");
        check(&ns, "/reportsx", "default:home/alice|reportsx");
        check(&ns, "/shared", "default:home/alice|shared");
        check(&ns, "/shared/team/x", "shared:|x");
        check(&ns, "/readme.txt", "pub:docs|readme.txt");
        check(&ns, "/readme.txt/x", "unmapped");
        check(&ns, "/deep/a/b/c", "default:deep|c");
    }

    #[test]
    fn without_a_root_entry_the_root_is_virtual() {
        let ns = Namespace::new(
            vec![
                mount("/in", "s", "alice/in", MountKind::Directory),
                mount("/out/daily", "s", "alice/out", MountKind::Directory),
            ],
            p("/"),
        );
        check(&ns, "/", "virtual");
        check(&ns, "/out", "virtual");
        check(&ns, "/out/daily/x", "s:alice/out|x");
        check(&ns, "/in/../etc", "unmapped");
        check(&ns, "/etc/passwd", "unmapped");
        let names: Vec<_> = ns.virtual_children(&p("/")).into_keys().collect();
        assert_eq!(names, ["in", "out"]);
        let out: Vec<_> = ns.virtual_children(&p("/out")).into_keys().collect();
        assert_eq!(out, ["daily"]);
        assert!(ns.virtual_children(&p("/in")).is_empty());
    }

    #[test]
    fn union_children_of_a_mapped_directory() {
        let ns = logical();
        let root: Vec<_> = ns.virtual_children(&p("/")).into_keys().collect();
        assert_eq!(root, ["deep", "readme.txt", "reports", "shared"]);
        let readme = &ns.virtual_children(&p("/"))["readme.txt"];
        assert_eq!(readme.map(|m| m.kind), Some(MountKind::File));
    }

    #[test]
    fn path_mode_anchors_inside_home() {
        let ns = Namespace::new(
            vec![Mount {
                entry: p("/reports"),
                store: store("reports"),
                prefix: "".into(),
                kind: MountKind::Directory,
                inner_anchor: Some("users/alice".into()),
            }],
            p("/reports/users/alice"),
        );
        check(&ns, "/reports/users/alice/a", "reports:users/alice|a");
        check(&ns, "/reports/users/alice", "reports:users/alice|");
        check(&ns, "/reports/users/bob/a", "reports:|users/bob/a");
        check(&ns, "/reports/users/alicex", "reports:|users/alicex");
        check(&ns, "/", "virtual");
        check(&ns, "/other", "unmapped");
    }

    proptest! {
        /// Whatever the client sends, a resolved key stays inside the prefix
        /// of the mount it resolved through.
        #[test]
        fn a_resolved_key_never_leaves_its_target(input in "[a-c./]{0,40}") {
            let ns = logical();
            let path = VirtualPath::parse(&input).unwrap();
            if let Resolved::Object { mount, key, .. } = ns.resolve(&path).unwrap() {
                let k = key.as_str();
                prop_assert!(
                    mount.prefix.is_empty()
                        || k == mount.prefix
                        || k.starts_with(&format!("{}/", mount.prefix)),
                    "{} escaped {}", k, mount.prefix
                );
                prop_assert!(!k.split('/').any(|s| s == ".." || s == "."));
            }
        }
    }
}
