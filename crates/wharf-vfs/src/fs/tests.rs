#![allow(clippy::unwrap_used)]

use std::io::Write;

use parking_lot::Mutex;
use wharf_storage::filesystem::FilesystemStore;

use super::*;
use crate::authorize::{HomeTargets, Target};
use crate::namespace::StoreHandle;

#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn activities(&self) -> Vec<serde_json::Value> {
        String::from_utf8(self.0.lock().clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
    fn types(&self) -> Vec<String> {
        self.activities()
            .iter()
            .map(|v| v["activity-type"].as_str().unwrap().to_owned())
            .collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    fs: UserFs,
    lines: Lines,
}

fn store(root: &std::path::Path, name: &str) -> Arc<StoreHandle> {
    Arc::new(StoreHandle {
        name: name.into(),
        store: Arc::new(FilesystemStore::open(&root.join(name)).unwrap()),
    })
}

fn p(s: &str) -> VirtualPath {
    VirtualPath::parse(s).unwrap()
}

fn audit(lines: &Lines) -> AuditContext {
    AuditContext {
        log: AuditLog::to_writer(Box::new(lines.clone())),
        session: Arc::new(SessionFields {
            session_id: "s1".into(),
            user: Some("alice".into()),
            ..SessionFields::default()
        }),
    }
}

/// LOGICAL: `/` -> default:home/alice, `/reports` -> reports:2026/alice.
fn logical() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let default = store(&root, "default");
    let reports = store(&root, "reports");
    let mounts = vec![
        Mount {
            entry: p("/"),
            store: default,
            prefix: "home/alice".into(),
            kind: MountKind::Directory,
            inner_anchor: None,
        },
        Mount {
            entry: p("/reports"),
            store: reports,
            prefix: "2026/alice".into(),
            kind: MountKind::Directory,
            inner_anchor: None,
        },
    ];
    let targets = HomeTargets::new(vec![
        Target {
            store: "default".into(),
            prefix: "home/alice".into(),
            is_file: false,
        },
        Target {
            store: "reports".into(),
            prefix: "2026/alice".into(),
            is_file: false,
        },
    ]);
    let lines = Lines::default();
    let fs = UserFs::new(
        Namespace::new(mounts, p("/")),
        Arc::new(targets),
        audit(&lines),
    );
    Fixture {
        _dir: dir,
        root,
        fs,
        lines,
    }
}

async fn names(fs: &UserFs, path: &str) -> Vec<String> {
    let mut listing = fs.list(&p(path)).await.unwrap();
    let mut names = Vec::new();
    while let Some(page) = listing.next_page(1).await.unwrap() {
        names.extend(page.into_iter().map(|e| e.name));
    }
    names.sort();
    names
}

async fn put(fs: &UserFs, path: &str, data: &'static [u8]) {
    let mut writer = fs
        .open_write(&p(path), "CREATE|TRUNCATE|WRITE")
        .await
        .unwrap();
    writer.write_at(0, Bytes::from_static(data)).await.unwrap();
    writer.close().await.unwrap();
}

#[tokio::test]
async fn missing_targets_list_empty_and_are_created_by_the_first_write() {
    let f = logical();
    assert_eq!(names(&f.fs, "/").await, ["reports"]);
    assert!(f.fs.stat(&p("/reports")).await.unwrap().is_dir());
    assert!(names(&f.fs, "/reports").await.is_empty());
    assert!(!f.root.join("reports/2026/alice").exists());
    put(&f.fs, "/reports/q1.csv", b"a,b\n").await;
    assert_eq!(
        std::fs::read(f.root.join("reports/2026/alice/q1.csv")).unwrap(),
        b"a,b\n"
    );
    assert_eq!(names(&f.fs, "/reports").await, ["q1.csv"]);
    put(&f.fs, "/top.txt", b"t").await;
    assert_eq!(names(&f.fs, "/").await, ["reports", "top.txt"]);
    assert_eq!(f.fs.stat(&p("/top.txt")).await.unwrap().size, 1);
    let lines = f.lines.activities();
    let close = lines
        .iter()
        .find(|l| l["activity-type"] == "CLOSE")
        .unwrap();
    assert_eq!(close["path"], "/reports/2026/alice/q1.csv");
    assert_eq!(close["bytes-in"], 4);
}

#[tokio::test]
async fn a_name_in_the_target_is_shadowed_by_an_entry() {
    let f = logical();
    f.fs.mkdir(&p("/sub")).await.unwrap();
    std::fs::create_dir_all(f.root.join("default/home/alice/reports")).unwrap();
    assert_eq!(names(&f.fs, "/").await, ["reports", "sub"]);
}

#[tokio::test]
async fn directory_operations_and_their_log_lines() {
    let f = logical();
    f.fs.mkdir(&p("/a")).await.unwrap();
    put(&f.fs, "/a/x", b"x").await;
    assert_eq!(
        f.fs.rmdir(&p("/a")).await.unwrap_err().kind,
        ErrorKind::DirectoryNotEmpty
    );
    f.fs.rename(&p("/a/x"), &p("/a/y"), false).await.unwrap();
    put(&f.fs, "/a/z", b"z").await;
    assert_eq!(
        f.fs.rename(&p("/a/y"), &p("/a/z"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AlreadyExists
    );
    f.fs.rename(&p("/a/y"), &p("/a/z"), true).await.unwrap();
    f.fs.remove(&p("/a/z")).await.unwrap();
    f.fs.rmdir(&p("/a")).await.unwrap();
    assert_eq!(
        f.fs.stat(&p("/a")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    let types = f.lines.types();
    for expected in [
        "MKDIR", "OPEN", "CLOSE", "RENAME", "DELETE", "RMDIR", "ERROR",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} in {types:?}"
        );
    }
    let rename = f
        .lines
        .activities()
        .into_iter()
        .find(|l| l["activity-type"] == "RENAME")
        .unwrap();
    assert_eq!(rename["path"], "/default/home/alice/a/x");
    assert_eq!(rename["new-path"], "/default/home/alice/a/y");
}

#[tokio::test]
async fn mapped_directories_cannot_be_removed_or_overwritten() {
    let f = logical();
    assert_eq!(
        f.fs.rmdir(&p("/reports")).await.unwrap_err().kind,
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        f.fs.open_write(&p("/reports"), "WRITE")
            .await
            .err()
            .unwrap()
            .kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        f.fs.mkdir(&p("/reports")).await.unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        f.fs.rename(&p("/reports"), &p("/r2"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::IsADirectory
    );
}

#[tokio::test]
async fn an_unclosed_upload_leaves_nothing_and_logs_partial_close() {
    let f = logical();
    let mut writer = f.fs.open_write(&p("/big"), "WRITE").await.unwrap();
    writer
        .write_at(0, Bytes::from(vec![1u8; 1000]))
        .await
        .unwrap();
    assert_eq!(
        f.fs.stat(&p("/big")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    drop(writer);
    assert_eq!(
        f.fs.stat(&p("/big")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert!(f.lines.types().contains(&"PARTIAL_CLOSE".to_owned()));
}

#[tokio::test]
async fn path_mode_with_the_default_role_stays_in_home() {
    let dir = tempfile::tempdir().unwrap();
    let reports = store(dir.path(), "reports");
    let other = store(dir.path(), "other");
    std::fs::create_dir_all(dir.path().join("reports/bob")).unwrap();
    std::fs::write(dir.path().join("reports/bob/secret"), b"s").unwrap();
    let mounts = vec![
        Mount {
            entry: p("/reports"),
            store: reports,
            prefix: String::new(),
            kind: MountKind::Directory,
            inner_anchor: Some("alice".into()),
        },
        Mount {
            entry: p("/other"),
            store: other,
            prefix: String::new(),
            kind: MountKind::Directory,
            inner_anchor: None,
        },
    ];
    let targets = HomeTargets::new(vec![Target {
        store: "reports".into(),
        prefix: "alice".into(),
        is_file: false,
    }]);
    let lines = Lines::default();
    let fs = UserFs::new(
        Namespace::new(mounts, p("/reports/alice")),
        Arc::new(targets),
        audit(&lines),
    );
    assert_eq!(fs.home().as_str(), "/reports/alice");
    put(&fs, "/reports/alice/mine", b"m").await;
    assert_eq!(names(&fs, "/reports/alice").await, ["mine"]);
    // The root lists the home's store only, since "other" cannot be listed.
    assert_eq!(names(&fs, "/").await, ["reports"]);
    for denied in ["/reports/bob/secret", "/reports/bob"] {
        assert_eq!(
            fs.open_read(&p(denied)).await.err().unwrap().kind,
            ErrorKind::PermissionDenied,
            "{denied}"
        );
    }
    assert_eq!(
        fs.list(&p("/reports")).await.err().unwrap().kind,
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        fs.open_write(&p("/other/x"), "WRITE")
            .await
            .err()
            .unwrap()
            .kind,
        ErrorKind::PermissionDenied
    );
    let denied = lines
        .activities()
        .into_iter()
        .find(|l| l["activity-type"] == "ACCESS_DENIED")
        .unwrap();
    assert_eq!(
        denied["message"],
        "s3:GetObject on arn:aws:s3:::reports/bob/secret"
    );
    assert!(denied["reason"].as_str().unwrap().contains("default role"));
}

#[tokio::test]
async fn hostile_paths_are_refused_before_any_store_is_touched() {
    let f = logical();
    let home = f.fs.home().clone();
    assert_eq!(
        f.fs.path(&home, "a\0b").unwrap_err().kind,
        ErrorKind::InvalidPath
    );
    assert_eq!(
        f.fs.path(&home, &"x".repeat(300)).unwrap_err().kind,
        ErrorKind::InvalidPath
    );
    let escaped = f.fs.path(&home, "../../../etc/passwd").unwrap();
    assert_eq!(escaped.as_str(), "/etc/passwd");
    // Inside the chroot that is just a missing file in the user's own tree.
    assert_eq!(
        f.fs.stat(&escaped).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
}
