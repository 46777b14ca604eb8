#![allow(clippy::unwrap_used)]

use std::io::Write;

use bytes::Bytes;
use parking_lot::Mutex;
use wharf_storage::filesystem::FilesystemStore;

use super::*;
use crate::authorize::{AccessRequest, Action, Denied, HomeTargets, Target};
use crate::namespace::{Mount, MountKind, StoreHandle};

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
        Quota::new(1024),
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
    let mut writer = fs.open_write(&p(path), OpenOptions::REPLACE).await.unwrap();
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
        f.fs.open_write(&p("/reports"), OpenOptions::REPLACE)
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
    let mut writer =
        f.fs.open_write(&p("/big"), OpenOptions::REPLACE)
            .await
            .unwrap();
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
        Quota::new(1024),
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
    // Above the home: traversable, and listed with (at least) the way home.
    assert_eq!(names(&fs, "/reports").await, ["alice"]);
    assert!(fs.stat(&p("/reports")).await.unwrap().is_dir());
    assert_eq!(
        fs.open_write(&p("/other/x"), OpenOptions::REPLACE)
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

/// An authorizer that allows exactly the listed (action, key) pairs on
/// store `s` (key `*` = any key).
struct Only(Vec<(Action, &'static str)>);

impl Authorizer for Only {
    fn authorize(&self, request: &AccessRequest<'_>) -> std::result::Result<(), Denied> {
        let allowed = self
            .0
            .iter()
            .any(|(action, key)| *action == request.action && (*key == "*" || *key == request.key));
        if allowed {
            Ok(())
        } else {
            Err(Denied {
                reason: "not in the test list".into(),
            })
        }
    }
}

/// PATH home `/s/users/alice` on store `s` (a filesystem store in a temp
/// dir), with the given authorizer.
fn path_home(authorizer: impl Authorizer) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let mounts = vec![Mount {
        entry: p("/s"),
        store: store(&root, "s"),
        prefix: String::new(),
        kind: MountKind::Directory,
        inner_anchor: Some("users/alice".into()),
    }];
    let lines = Lines::default();
    let fs = UserFs::new(
        Namespace::new(mounts, p("/s/users/alice")),
        Arc::new(authorizer),
        audit(&lines),
        Quota::new(1024),
    );
    Fixture {
        _dir: dir,
        root,
        fs,
        lines,
    }
}

#[tokio::test]
async fn a_path_home_that_does_not_exist_yet_and_the_way_to_it_are_traversable() {
    // A role that may do everything inside the home and nothing else.
    let f = path_home(HomeTargets::new(vec![Target {
        store: "s".into(),
        prefix: "users/alice".into(),
        is_file: false,
    }]));
    assert!(!f.root.join("s/users/alice").exists());
    for dir in ["/", "/s", "/s/users", "/s/users/alice"] {
        assert!(f.fs.stat(&p(dir)).await.unwrap().is_dir(), "{dir}");
    }
    assert_eq!(names(&f.fs, "/s").await, ["users"]);
    assert_eq!(names(&f.fs, "/s/users").await, ["alice"]);
    assert!(names(&f.fs, "/s/users/alice").await.is_empty());
    // The first write creates it; other users' directories stay closed.
    put(&f.fs, "/s/users/alice/a/b.txt", b"x").await;
    assert_eq!(names(&f.fs, "/s/users/alice").await, ["a"]);
    std::fs::create_dir_all(f.root.join("s/users/bob")).unwrap();
    assert_eq!(names(&f.fs, "/s/users").await, ["alice"]);
    assert_eq!(
        f.fs.stat(&p("/s/users/bob")).await.unwrap_err().kind,
        ErrorKind::PermissionDenied
    );
    // The home and the directories above it cannot be removed.
    for dir in ["/s/users/alice", "/s/users", "/s", "/"] {
        let error = f.fs.rmdir(&p(dir)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::PermissionDenied, "{dir}");
    }
}

#[tokio::test]
async fn stat_is_allowed_by_a_one_key_listing_or_by_get_object() {
    // Read-only drop box: GetObject, no ListBucket.
    let f = path_home(Only(vec![(Action::GetObject, "*")]));
    std::fs::create_dir_all(f.root.join("s/users/alice")).unwrap();
    std::fs::write(f.root.join("s/users/alice/report.csv"), b"1,2").unwrap();
    let meta = f.fs.stat(&p("/s/users/alice/report.csv")).await.unwrap();
    assert_eq!(meta.size, 3);
    let reader =
        f.fs.open_read(&p("/s/users/alice/report.csv"))
            .await
            .unwrap();
    assert_eq!(reader.metadata().size, 3);
    assert!(reader.metadata().modified.is_some());

    // Write-only drop box: PutObject and a one-key listing, no GetObject.
    let f = path_home(Only(vec![
        (Action::PutObject, "*"),
        (Action::ListBucket, "users/alice/in.csv"),
    ]));
    put(&f.fs, "/s/users/alice/in.csv", b"abc").await;
    assert_eq!(
        f.fs.stat(&p("/s/users/alice/in.csv")).await.unwrap().size,
        3
    );
    assert_eq!(
        f.fs.open_read(&p("/s/users/alice/in.csv"))
            .await
            .err()
            .unwrap()
            .kind,
        ErrorKind::PermissionDenied
    );

    // Neither: denied whether or not the path exists, and logged.
    let f = path_home(Only(vec![(Action::PutObject, "*")]));
    put(&f.fs, "/s/users/alice/there", b"x").await;
    for path in ["/s/users/alice/there", "/s/users/alice/not-there"] {
        assert_eq!(
            f.fs.stat(&p(path)).await.unwrap_err().kind,
            ErrorKind::PermissionDenied,
            "{path}"
        );
    }
    assert!(f.lines.types().contains(&"ACCESS_DENIED".to_owned()));
}

#[tokio::test]
async fn what_each_way_of_opening_for_writing_means() {
    let f = logical();
    put(&f.fs, "/full", b"data").await;
    put(&f.fs, "/empty", b"").await;
    let open = |path: &'static str, options: OpenOptions| {
        let fs = f.fs.clone();
        async move { fs.open_write(&p(path), options).await.map(drop) }
    };
    let append = OpenOptions {
        create: true,
        append: true,
        ..OpenOptions::default()
    };
    let keep = OpenOptions {
        create: true,
        ..OpenOptions::default()
    };
    let exclusive = OpenOptions {
        exclusive: true,
        ..OpenOptions::REPLACE
    };
    let resume = OpenOptions {
        create: true,
        offset: 10,
        ..OpenOptions::default()
    };
    let unsupported = |r: Result<()>| {
        let error = r.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Unsupported);
        // Our own words, shown to the client.
        assert_ne!(error.client_message(), ErrorKind::Unsupported.client_text());
    };
    open("/full", OpenOptions::REPLACE).await.unwrap();
    unsupported(open("/full", append).await);
    unsupported(open("/full", keep).await);
    unsupported(open("/new", resume).await);
    open("/empty", append).await.unwrap();
    open("/new", append).await.unwrap();
    assert_eq!(
        open("/full", exclusive).await.unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        open("/missing", OpenOptions::default())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    let modes: Vec<String> = f
        .lines
        .activities()
        .into_iter()
        .filter(|l| l["activity-type"] == "OPEN")
        .map(|l| l["mode"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        modes.contains(&"CREATE|TRUNCATE|WRITE".to_owned()),
        "{modes:?}"
    );
    assert!(
        modes.contains(&"CREATE|APPEND|WRITE".to_owned()),
        "{modes:?}"
    );
}

#[tokio::test]
async fn control_characters_in_names() {
    let f = logical();
    for bad in ["/a\rb", "/new\nline", "/tab\tdir/x"] {
        let error =
            f.fs.open_write(&p(bad), OpenOptions::REPLACE)
                .await
                .err()
                .unwrap();
        assert_eq!(error.kind, ErrorKind::InvalidPath, "{bad:?}");
        assert_eq!(
            f.fs.mkdir(&p(bad)).await.unwrap_err().kind,
            ErrorKind::InvalidPath
        );
    }
    put(&f.fs, "/ok", b"x").await;
    assert_eq!(
        f.fs.rename(&p("/ok"), &p("/forged\r\nline"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidPath
    );
    // A name made outside wharf is listed escaped, never raw.
    std::fs::write(f.root.join("default/home/alice/evil\r\nname"), b"x").unwrap();
    let listed = names(&f.fs, "/").await;
    assert!(
        listed.contains(&"evil\\x0d\\x0aname".to_owned()),
        "{listed:?}"
    );
}

#[tokio::test]
async fn writes_beyond_the_largest_object_are_refused_not_wrapped() {
    let f = logical();
    let mut writer =
        f.fs.open_write(&p("/big"), OpenOptions::REPLACE)
            .await
            .unwrap();
    for (offset, len) in [(MAX_OBJECT_BYTES, 1), (u64::MAX - 1, 2), (u64::MAX, 1)] {
        let error = writer
            .write_at(offset, Bytes::from(vec![0u8; len]))
            .await
            .unwrap_err();
        assert_eq!(error.kind, ErrorKind::NoSpace, "{offset}");
    }
    writer.write_at(0, Bytes::from_static(b"ok")).await.unwrap();
    writer.close().await.unwrap();
}

/// Allows everything except the listed (action, key prefix) pairs.
struct Except(Vec<(Action, &'static str)>);

impl Authorizer for Except {
    fn authorize(&self, request: &AccessRequest<'_>) -> std::result::Result<(), Denied> {
        let denied = self
            .0
            .iter()
            .any(|(action, prefix)| *action == request.action && request.key.starts_with(prefix));
        if denied {
            Err(Denied {
                reason: format!("explicit deny on {}", request.key),
            })
        } else {
            Ok(())
        }
    }
}

fn logical_with(authorizer: impl Authorizer) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let mounts = vec![Mount {
        entry: p("/"),
        store: store(&root, "default"),
        prefix: "alice".into(),
        kind: MountKind::Directory,
        inner_anchor: None,
    }];
    let lines = Lines::default();
    let fs = UserFs::new(
        Namespace::new(mounts, p("/")),
        Arc::new(authorizer),
        audit(&lines),
        Quota::new(1024),
    );
    Fixture {
        _dir: dir,
        root,
        fs,
        lines,
    }
}

#[tokio::test]
async fn a_directory_rename_cannot_carry_what_may_not_be_read() {
    let f = logical_with(Except(vec![(Action::GetObject, "alice/projects/secret/")]));
    f.fs.mkdir(&p("/projects")).await.unwrap();
    f.fs.mkdir(&p("/projects/secret")).await.unwrap();
    put(&f.fs, "/projects/secret/plan.txt", b"secret").await;
    put(&f.fs, "/projects/open.txt", b"open").await;
    let error =
        f.fs.rename(&p("/projects"), &p("/p2"), false)
            .await
            .unwrap_err();
    assert_eq!(error.kind, ErrorKind::PermissionDenied);
    assert_eq!(error.client_message(), "Permission denied");
    assert!(
        f.root
            .join("default/alice/projects/secret/plan.txt")
            .exists()
    );
    assert!(!f.root.join("default/alice/p2").exists());
    let denied = f
        .lines
        .activities()
        .into_iter()
        .find(|l| l["activity-type"] == "ACCESS_DENIED")
        .unwrap();
    assert!(
        denied["message"]
            .as_str()
            .unwrap()
            .contains("s3:GetObject on arn:aws:s3:::default/alice/projects/secret/"),
        "{denied}"
    );
    // A directory with nothing forbidden in it moves.
    f.fs.mkdir(&p("/docs")).await.unwrap();
    f.fs.mkdir(&p("/docs/deep")).await.unwrap();
    put(&f.fs, "/docs/deep/a.txt", b"a").await;
    f.fs.rename(&p("/docs"), &p("/docs2"), false).await.unwrap();
    assert_eq!(
        std::fs::read(f.root.join("default/alice/docs2/deep/a.txt")).unwrap(),
        b"a"
    );
}

#[tokio::test]
async fn a_directory_rename_cannot_write_what_may_not_be_written() {
    // Deny s3:PutObject on published/*.html, as a policy with a wildcard
    // would; here: anything under published/ whose key holds ".html".
    struct NoHtmlInPublished;
    impl Authorizer for NoHtmlInPublished {
        fn authorize(&self, request: &AccessRequest<'_>) -> std::result::Result<(), Denied> {
            if request.action == Action::PutObject
                && request.key.starts_with("alice/published/")
                && request.key.ends_with(".html")
            {
                return Err(Denied {
                    reason: "explicit deny".into(),
                });
            }
            Ok(())
        }
    }
    let f = logical_with(NoHtmlInPublished);
    f.fs.mkdir(&p("/published")).await.unwrap();
    f.fs.mkdir(&p("/staging")).await.unwrap();
    put(&f.fs, "/staging/evil.html", b"<script>").await;
    assert_eq!(
        f.fs.open_write(&p("/published/evil.html"), OpenOptions::REPLACE)
            .await
            .err()
            .unwrap()
            .kind,
        ErrorKind::PermissionDenied
    );
    assert_eq!(
        f.fs.rename(&p("/staging"), &p("/published/staging"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::PermissionDenied
    );
    assert!(!f.root.join("default/alice/published/staging").exists());
}

#[tokio::test]
async fn a_directory_rename_is_no_oracle_for_a_tree_that_may_not_be_listed() {
    let f = logical_with(Except(vec![(Action::ListBucket, "alice/hidden/")]));
    std::fs::create_dir_all(f.root.join("default/alice/hidden")).unwrap();
    // Even empty: refused, so the answer never depends on the contents.
    assert_eq!(
        f.fs.rename(&p("/hidden"), &p("/moved"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::PermissionDenied
    );
}

#[tokio::test]
async fn a_directory_too_large_to_check_is_refused_clearly() {
    let f = logical_with(Except(vec![]));
    let big = f.root.join("default/alice/big");
    std::fs::create_dir_all(&big).unwrap();
    for i in 0..=MAX_RENAME_ENTRIES {
        std::fs::write(big.join(format!("f{i}")), b"").unwrap();
    }
    let error =
        f.fs.rename(&p("/big"), &p("/big2"), false)
            .await
            .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(
        error.client_message().contains("10000 entries"),
        "{error:?}"
    );
    assert!(big.exists());
}
