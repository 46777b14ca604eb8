#![allow(clippy::unwrap_used)]

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;

use super::*;
use crate::Kind;

fn store() -> (tempfile::TempDir, FilesystemStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FilesystemStore::open(&dir.path().join("root")).unwrap();
    (dir, store)
}

fn key(anchor: &str, rest: &str) -> Key {
    Key::anchored(anchor, rest).unwrap()
}

async fn write(store: &FilesystemStore, key: &Key, data: &[u8]) {
    let mut writer = store.open_write(key).await.unwrap();
    writer
        .write_at(0, Bytes::copy_from_slice(data))
        .await
        .unwrap();
    writer.finish().await.unwrap();
}

async fn names(store: &FilesystemStore, dir: &Key) -> Vec<String> {
    let mut lister = store.list(dir).await.unwrap();
    let mut names = Vec::new();
    while let Some(page) = lister.next_page(2).await.unwrap() {
        names.extend(page.into_iter().map(|e| e.name));
    }
    names.sort();
    names
}

#[tokio::test]
async fn an_upload_is_invisible_until_finished() {
    let (dir, store) = store();
    let k = key("home/alice", "a.txt");
    let mut writer = store.open_write(&k).await.unwrap();
    writer
        .write_at(0, Bytes::from_static(b"hello "))
        .await
        .unwrap();
    writer
        .write_at(6, Bytes::from_static(b"world"))
        .await
        .unwrap();
    assert_eq!(store.head(&k).await.unwrap(), None);
    assert!(names(&store, &key("home/alice", "")).await.is_empty());
    let meta = writer.finish().await.unwrap();
    assert_eq!(meta.size, 11);
    let on_disk = std::fs::read(dir.path().join("root/home/alice/a.txt")).unwrap();
    assert_eq!(on_disk, b"hello world");
    let reader = store.open_read(&k).await.unwrap();
    assert_eq!(reader.size(), 11);
    let got = reader.read_at(6, 100, BytesMut::new()).await.unwrap();
    assert_eq!(&got[..], b"world");
    let past = reader.read_at(20, 5, BytesMut::new()).await.unwrap();
    assert!(past.is_empty());
}

#[tokio::test]
async fn aborted_and_dropped_uploads_leave_nothing() {
    let (dir, store) = store();
    let k = key("", "x/a.bin");
    write(&store, &k, b"old").await;
    let mut writer = store.open_write(&k).await.unwrap();
    writer
        .write_at(0, Bytes::from(vec![7u8; 3 << 20]))
        .await
        .unwrap();
    writer.abort().await.unwrap();
    let mut writer = store.open_write(&k).await.unwrap();
    writer
        .write_at(0, Bytes::from_static(b"new"))
        .await
        .unwrap();
    drop(writer);
    assert_eq!(
        std::fs::read(dir.path().join("root/x/a.bin")).unwrap(),
        b"old"
    );
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("root/x"))
        .unwrap()
        .collect();
    assert_eq!(entries.len(), 1);
}

#[tokio::test]
async fn writes_at_any_offset_and_sparse_gaps() {
    let (_dir, store) = store();
    let k = key("", "sparse");
    let mut writer = store.open_write(&k).await.unwrap();
    writer.write_at(10, Bytes::from_static(b"b")).await.unwrap();
    writer.write_at(0, Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(writer.finish().await.unwrap().size, 11);
}

#[tokio::test]
async fn directories_and_listing() {
    let (_dir, store) = store();
    store.create_dir(&key("t", "a/b")).await.unwrap();
    write(&store, &key("t", "a/f1"), b"1").await;
    write(&store, &key("t", "a/f2"), b"22").await;
    write(&store, &key("t", "a/f3"), b"333").await;
    assert_eq!(names(&store, &key("t", "a")).await, ["b", "f1", "f2", "f3"]);
    assert_eq!(
        store.head(&key("t", "a/b")).await.unwrap().map(|m| m.kind),
        Some(Kind::Directory)
    );
    assert_eq!(
        store.create_dir(&key("t", "a/b")).await.unwrap_err().kind,
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        store.delete_dir(&key("t", "a")).await.unwrap_err().kind,
        ErrorKind::DirectoryNotEmpty
    );
    assert_eq!(
        store.delete(&key("t", "a/b")).await.unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    store.delete_dir(&key("t", "a/b")).await.unwrap();
    store.delete(&key("t", "a/f1")).await.unwrap();
    assert_eq!(
        store.delete(&key("t", "a/f1")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    // A missing anchor lists as empty and heads as nothing.
    assert!(names(&store, &key("missing/target", "")).await.is_empty());
    assert_eq!(store.head(&key("missing/target", "x")).await.unwrap(), None);
}

#[tokio::test]
async fn rename_respects_replace() {
    let (_dir, store) = store();
    write(&store, &key("", "a"), b"a").await;
    write(&store, &key("", "b"), b"b").await;
    let err = store
        .rename(&key("", "a"), &key("", "b"), false)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::AlreadyExists);
    store
        .rename(&key("", "a"), &key("", "b"), true)
        .await
        .unwrap();
    assert_eq!(store.head(&key("", "a")).await.unwrap(), None);
    store.copy(&key("", "b"), &key("", "c/d")).await.unwrap();
    let reader = store.open_read(&key("", "c/d")).await.unwrap();
    assert_eq!(
        &reader.read_at(0, 10, BytesMut::new()).await.unwrap()[..],
        b"a"
    );
}

#[tokio::test]
async fn symlinks_stay_inside_their_anchor() {
    let (dir, store) = store();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("home/alice/docs")).unwrap();
    std::fs::create_dir_all(root.join("home/bob")).unwrap();
    std::fs::write(root.join("home/bob/secret"), b"bob's").unwrap();
    std::fs::write(dir.path().join("outside"), b"host file").unwrap();
    std::fs::write(root.join("home/alice/docs/real"), b"alice's").unwrap();
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(target, root.join("home/alice").join(name)).unwrap()
    };
    link("../bob/secret", "to-bob");
    link(dir.path().join("outside").to_str().unwrap(), "to-host");
    link("docs/real", "inside");
    link("/etc", "etc");

    let alice = |rest: &str| key("home/alice", rest);
    for escape in ["to-bob", "to-host", "etc/passwd"] {
        let err = store.open_read(&alice(escape)).await.err().unwrap();
        assert_eq!(err.kind, ErrorKind::PermissionDenied, "{escape}");
    }
    let reader = store.open_read(&alice("inside")).await.unwrap();
    assert_eq!(
        &reader.read_at(0, 10, BytesMut::new()).await.unwrap()[..],
        b"alice's"
    );
    // Escaping links are not listed; the inside one is.
    assert_eq!(names(&store, &alice("")).await, ["docs", "inside"]);
    // Writing through an escaping directory link is refused too.
    let err = store.open_write(&alice("etc/evil")).await.err().unwrap();
    assert_eq!(err.kind, ErrorKind::PermissionDenied);
}

#[tokio::test]
async fn set_modified_is_applied() {
    let (_dir, store) = store();
    let k = key("", "f");
    let when = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let mut writer = store.open_write(&k).await.unwrap();
    writer.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    writer.set_modified(when);
    writer.finish().await.unwrap();
    assert_eq!(store.head(&k).await.unwrap().unwrap().modified, Some(when));
    let later = when + Duration::from_secs(60);
    store.set_modified(&k, later).await.unwrap();
    assert_eq!(store.head(&k).await.unwrap().unwrap().modified, Some(later));
}

#[tokio::test]
async fn many_small_sequential_writes_land_in_order() {
    let (dir, store) = store();
    let k = key("", "many");
    let mut writer = store.open_write(&k).await.unwrap();
    let mut expected = Vec::new();
    // More chunks than one pwritev takes (IOV_MAX = 1024), across flushes.
    for i in 0..3000u32 {
        let chunk: Vec<u8> = (0..700u32).map(|j| ((i * 7 + j) % 251) as u8).collect();
        writer
            .write_at(expected.len() as u64, Bytes::from(chunk.clone()))
            .await
            .unwrap();
        expected.extend_from_slice(&chunk);
    }
    writer.finish().await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("root/many")).unwrap(),
        expected
    );
}

#[tokio::test]
async fn the_names_of_uploads_in_progress_are_reserved() {
    let (_dir, store) = store();
    let reserved = key("", ".wharf-upload-0123456789abcdef");
    let inside = key("", "a/.wharf-upload-x/b");
    for k in [&reserved, &inside] {
        assert_eq!(
            store.open_write(k).await.err().unwrap().kind,
            ErrorKind::InvalidKey
        );
        assert_eq!(
            store.open_read(k).await.err().unwrap().kind,
            ErrorKind::InvalidKey
        );
        assert_eq!(store.head(k).await.unwrap_err().kind, ErrorKind::InvalidKey);
        assert_eq!(
            store.create_dir(k).await.unwrap_err().kind,
            ErrorKind::InvalidKey
        );
    }
    // Names that only contain the prefix elsewhere are fine.
    write(&store, &key("", "my.wharf-upload-notes"), b"x").await;
    assert_eq!(names(&store, &key("", "")).await, ["my.wharf-upload-notes"]);
}
