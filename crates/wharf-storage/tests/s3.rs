//! The s3 store against a real S3 API (moto_server), checked from outside
//! through boto3.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use wharf_storage::s3::{S3Config, S3Store, Sse};
use wharf_storage::{ErrorKind, Key, Kind, Store};
use wharf_test_support::s3::{ACCESS_KEY_ID, REGION, S3Server, SECRET_ACCESS_KEY};

const MIB: usize = 1 << 20;
const BUCKET: &str = "wharf-test";

/// Everything logged by the tests, so one can look for a warning.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("wharf_storage=debug")
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Fixture {
    server: S3Server,
    store: S3Store,
}

fn config(server: &S3Server) -> S3Config {
    let mut config = S3Config::new(BUCKET);
    config.endpoint = Some(server.endpoint());
    config.region = REGION.to_owned();
    config.path_style = true;
    config.access_key_id = Some(ACCESS_KEY_ID.to_owned());
    config.secret_access_key = Some(SECRET_ACCESS_KEY.to_owned());
    config.upload_part_size = 5 * MIB;
    config.upload_concurrency = 2;
    config.request_timeout = Duration::from_secs(20);
    config.retries = 2;
    config
}

fn fixture_with(tweak: impl FnOnce(&mut S3Config)) -> Fixture {
    logs();
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut config = config(&server);
    tweak(&mut config);
    let store = S3Store::new(config).unwrap();
    Fixture { server, store }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn key(path: &str) -> Key {
    Key::new(path).unwrap()
}

/// Deterministic bytes that differ at every offset of a large object.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn put(store: &S3Store, path: &str, data: &[u8], write_size: usize) {
    let mut writer = store.open_write(&key(path)).await.unwrap();
    let mut offset = 0;
    for piece in data.chunks(write_size.max(1)) {
        writer
            .write_at(offset as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
        offset += piece.len();
    }
    let meta = writer.finish().await.unwrap();
    assert_eq!(meta.size, data.len() as u64);
}

async fn names(store: &S3Store, dir: &str, page: usize) -> Vec<(String, Kind, u64)> {
    let mut lister = store.list(&key(dir)).await.unwrap();
    let mut all = Vec::new();
    while let Some(entries) = lister.next_page(page).await.unwrap() {
        assert!(!entries.is_empty() && entries.len() <= page);
        all.extend(
            entries
                .into_iter()
                .map(|e| (e.name, e.meta.kind, e.meta.size)),
        );
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_multipart_objects_round_trip_with_ranged_reads() {
    let Fixture { server, store } = fixture();

    // Below one part: a single PutObject at finish.
    let small = pattern(1000, 1);
    put(&store, "docs/small.bin", &small, 300).await;
    let stats = store.stats();
    assert_eq!(stats.requests("PutObject"), 1);
    assert_eq!(stats.requests("CreateMultipartUpload"), 0);
    assert_eq!(stats.upload_buffered, 0);
    assert_eq!(server.get_object(BUCKET, "docs/small.bin").unwrap(), small);

    // An empty object is one empty PutObject.
    let writer = store.open_write(&key("docs/empty")).await.unwrap();
    assert_eq!(writer.finish().await.unwrap().size, 0);
    assert_eq!(server.head_object(BUCKET, "docs/empty").unwrap().size, 0);
    let empty = store.open_read(&key("docs/empty")).await.unwrap();
    assert_eq!(empty.size(), 0);
    assert!(
        empty
            .read_at(0, 10, BytesMut::new())
            .await
            .unwrap()
            .is_empty()
    );

    // 20 MiB with 5 MiB parts: four parts, invisible until finished.
    let big = pattern(20 * MIB, 2);
    let mut writer = store.open_write(&key("docs/big.bin")).await.unwrap();
    let mut offset = 0usize;
    for piece in big[..12 * MIB].chunks(256 << 10) {
        writer
            .write_at(offset as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
        offset += piece.len();
    }
    assert_eq!(server.head_object(BUCKET, "docs/big.bin"), None);
    assert_eq!(store.head(&key("docs/big.bin")).await.unwrap(), None);
    eventually(
        "the multipart upload to show",
        Duration::from_secs(20),
        || server.multipart_uploads(BUCKET).len() == 1,
    )
    .await;
    for piece in big[offset..].chunks(256 << 10) {
        writer
            .write_at(offset as u64, Bytes::copy_from_slice(piece))
            .await
            .unwrap();
        offset += piece.len();
    }
    let meta = writer.finish().await.unwrap();
    assert_eq!(meta.size, big.len() as u64);
    let stats = store.stats();
    assert_eq!(stats.requests("CreateMultipartUpload"), 1);
    assert_eq!(stats.requests("UploadPart"), 4);
    assert_eq!(stats.requests("CompleteMultipartUpload"), 1);
    assert!(server.multipart_uploads(BUCKET).is_empty());
    assert_eq!(
        server.head_object(BUCKET, "docs/big.bin").unwrap().size,
        big.len() as u64
    );
    let head = store.head(&key("docs/big.bin")).await.unwrap().unwrap();
    assert_eq!((head.kind, head.size), (Kind::File, big.len() as u64));
    assert!(head.modified.is_some());

    // Random ranged reads, including ones across chunk boundaries and past the end.
    let reader = store.open_read(&key("docs/big.bin")).await.unwrap();
    assert_eq!(reader.size(), big.len() as u64);
    let mut state = 7u64;
    for _ in 0..40 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let offset = (state >> 16) as usize % big.len();
        let len = 1 + (state >> 40) as usize % (300 << 10);
        let got = reader
            .read_at(offset as u64, len, BytesMut::new())
            .await
            .unwrap();
        let end = (offset + len).min(big.len());
        assert_eq!(&got[..], &big[offset..end], "read of {len} at {offset}");
    }
    let boundary = reader
        .read_at((8 * MIB - 100) as u64, 200, BytesMut::from(&b"xy"[..]))
        .await
        .unwrap();
    assert_eq!(&boundary[..2], b"xy");
    assert_eq!(&boundary[2..], &big[8 * MIB - 100..8 * MIB + 100]);
    let past = reader
        .read_at(big.len() as u64 + 5, 10, BytesMut::new())
        .await
        .unwrap();
    assert!(past.is_empty());
    let small_reader = store.open_read(&key("docs/small.bin")).await.unwrap();
    let tail = small_reader
        .read_at(990, 100, BytesMut::new())
        .await
        .unwrap();
    assert_eq!(&tail[..], &small[990..]);
}

/// Reads the whole object the way an SFTP client does: `request`-byte reads
/// at sequential offsets, `in_flight` of them at once.
async fn read_pipelined(store: &S3Store, path: &str, request: usize, in_flight: usize) -> Vec<u8> {
    use futures::StreamExt;
    let reader: Arc<dyn wharf_storage::Reader> =
        Arc::from(store.open_read(&key(path)).await.unwrap());
    let size = reader.size() as usize;
    let mut out = vec![0u8; size];
    let mut pending = futures::stream::FuturesOrdered::new();
    let (mut next, mut done) = (0usize, 0usize);
    while done < size {
        while next < size && pending.len() < in_flight {
            let reader = reader.clone();
            let offset = next;
            pending.push_back(async move {
                let got = reader
                    .read_at(offset as u64, request, BytesMut::new())
                    .await
                    .unwrap();
                (offset, got)
            });
            next += request;
        }
        let (offset, got) = pending.next().await.unwrap();
        out[offset..offset + got.len()].copy_from_slice(&got);
        done += got.len();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_reads_use_few_large_gets_and_bounded_memory() {
    let Fixture { server, store } = fixture();
    let data = pattern(20 * MIB, 3);
    put(&store, "seq.bin", &data, 4 * MIB).await;

    // 32 KiB reads, 64 in flight: served by 8 MiB GETs, 3 instead of 640.
    let before = store.stats();
    let out = read_pipelined(&store, "seq.bin", 32 << 10, 64).await;
    assert!(out == data, "sequential read returned different bytes");
    let after = store.stats();
    let gets = after.requests("GetObject") - before.requests("GetObject");
    assert!(gets <= 4, "{gets} GETs for a sequential read");
    assert!(after.read_ahead_peak <= 4 * 8 * MIB as u64);
    eventually(
        "read-ahead memory to be released",
        Duration::from_secs(10),
        || store.stats().read_ahead_buffered == 0,
    )
    .await;

    // With 1 MiB chunks and 2 ahead, a reader whose reads in flight span
    // at most a chunk (64 KiB x 16) never holds more than 2 + 2 chunks,
    // however large the object.
    let mut small_chunks = config(&server);
    small_chunks.read_chunk_size = MIB;
    small_chunks.read_ahead = 2;
    let store = S3Store::new(small_chunks).unwrap();
    let out = read_pipelined(&store, "seq.bin", 64 << 10, 16).await;
    assert!(out == data, "sequential read returned different bytes");
    let stats = store.stats();
    assert!(
        stats.read_ahead_peak <= 4 * MIB as u64,
        "read-ahead held {} bytes",
        stats.read_ahead_peak
    );
    assert!(stats.read_ahead_peak >= 2 * MIB as u64);
    let gets = stats.requests("GetObject");
    assert!((20..=24).contains(&gets), "{gets} GETs of 1 MiB for 20 MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_memory_stays_within_part_size_times_concurrency() {
    let Fixture { server, store } = fixture();
    // 64 MiB, 5 MiB parts, concurrency 2: at most two parts at once, the
    // one filling included.
    let data = pattern(64 * MIB, 4);
    store.reset_peaks();
    put(&store, "huge.bin", &data, MIB).await;
    let stats = store.stats();
    assert!(
        stats.upload_buffered_peak <= 10 * MIB as u64,
        "uploads buffered {} bytes",
        stats.upload_buffered_peak
    );
    assert!(stats.upload_buffered_peak >= 5 * MIB as u64);
    assert_eq!(stats.upload_buffered, 0);
    assert_eq!(stats.requests("UploadPart"), 13);
    assert_eq!(
        server.head_object(BUCKET, "huge.bin").unwrap().size,
        data.len() as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_markers_and_common_prefixes_list_once() {
    let Fixture { server, store } = fixture();
    let keys: Vec<String> = ["d/", "d/x/", "d/x/f", "d/y/", "d/z", "d/w/g", "e"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    server.put_objects(BUCKET, &keys[..1], b"");
    server.put_objects(BUCKET, &keys[1..2], b"");
    server.put_objects(BUCKET, &keys[2..3], b"hello");
    server.put_objects(BUCKET, &keys[3..4], b"");
    server.put_objects(BUCKET, &keys[4..], b"hello");

    let dir = |name: &str| (name.to_owned(), Kind::Directory, 0);
    let file = |name: &str, size| (name.to_owned(), Kind::File, size);
    assert_eq!(names(&store, "", 100).await, vec![dir("d"), file("e", 5)]);
    for page in [1, 2, 100] {
        assert_eq!(
            names(&store, "d", page).await,
            vec![dir("w"), dir("x"), dir("y"), file("z", 5)],
            "page size {page}"
        );
    }
    let mut lister = store.list(&key("d")).await.unwrap();
    let entries = lister.next_page(100).await.unwrap().unwrap();
    let z = entries.iter().find(|e| e.name == "z").unwrap();
    assert!(z.meta.modified.is_some());
    assert!(names(&store, "nothing-here", 10).await.is_empty());
    assert!(names(&store, "e", 10).await.is_empty());

    // head: objects, markers, prefixes, nothing, the root.
    assert_eq!(store.head(&key("d/z")).await.unwrap().unwrap().size, 5);
    for d in ["d", "d/x", "d/y", "d/w"] {
        assert_eq!(
            store.head(&key(d)).await.unwrap().unwrap().kind,
            Kind::Directory,
            "{d}"
        );
    }
    assert_eq!(store.head(&key("d/nope")).await.unwrap(), None);
    assert_eq!(store.head(&key("d/zz")).await.unwrap(), None);
    assert_eq!(
        store.head(&Key::root()).await.unwrap().unwrap().kind,
        Kind::Directory
    );

    // mkdir writes the marker; an existing directory or file is refused.
    for existing in ["d/y", "d/w", "d/z", ""] {
        let k = if existing.is_empty() {
            Key::root()
        } else {
            key(existing)
        };
        assert_eq!(
            store.create_dir(&k).await.unwrap_err().kind,
            ErrorKind::AlreadyExists,
            "{existing}"
        );
    }
    store.create_dir(&key("new/sub")).await.unwrap();
    assert_eq!(server.head_object(BUCKET, "new/sub/").unwrap().size, 0);
    assert_eq!(names(&store, "new", 10).await, vec![dir("sub")]);
    assert!(names(&store, "new/sub", 10).await.is_empty());

    // rmdir only when nothing but the marker is under the prefix.
    for busy in ["d", "d/x", "d/w"] {
        assert_eq!(
            store.delete_dir(&key(busy)).await.unwrap_err().kind,
            ErrorKind::DirectoryNotEmpty,
            "{busy}"
        );
    }
    store.delete_dir(&key("d/y")).await.unwrap();
    assert_eq!(server.head_object(BUCKET, "d/y/"), None);
    assert_eq!(store.head(&key("d/y")).await.unwrap(), None);
    assert_eq!(
        store.delete_dir(&key("d/y")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        store.delete_dir(&key("d/z")).await.unwrap_err().kind,
        ErrorKind::NotADirectory
    );
    assert_eq!(
        store.delete_dir(&Key::root()).await.unwrap_err().kind,
        ErrorKind::PermissionDenied
    );

    // Files and directories are not interchangeable.
    assert_eq!(
        store.delete(&key("d/x")).await.unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        store.open_read(&key("d")).await.err().unwrap().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        store.open_write(&key("d/x")).await.err().unwrap().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        store.open_read(&key("d/none")).await.err().unwrap().kind,
        ErrorKind::NotFound
    );
    store.delete(&key("d/z")).await.unwrap();
    assert_eq!(
        store.delete(&key("d/z")).await.unwrap_err().kind,
        ErrorKind::NotFound
    );
    assert_eq!(server.head_object(BUCKET, "d/z"), None);
    // Removing the last object under a prefix-only directory keeps the
    // directory (a marker is written), as a filesystem would.
    store.delete(&key("d/w/g")).await.unwrap();
    assert_eq!(
        store.head(&key("d/w")).await.unwrap().map(|m| m.kind),
        Some(Kind::Directory)
    );
    assert!(server.head_object(BUCKET, "d/w/").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_directory_lists_page_by_page() {
    let Fixture { server, store } = fixture();
    let keys: Vec<String> = (0..2500).map(|i| format!("many/obj-{i:05}")).collect();
    server.put_objects(BUCKET, &keys, b"x");
    server.put_objects(BUCKET, &["many/".to_owned(), "many/sub/".to_owned()], b"");

    let before = store.stats().requests("ListObjectsV2");
    let mut lister = store.list(&key("many")).await.unwrap();
    let first = lister.next_page(100).await.unwrap().unwrap();
    assert_eq!(first.len(), 100);
    // Only the first server page (1000 keys) has been fetched.
    assert_eq!(store.stats().requests("ListObjectsV2") - before, 1);
    let mut seen: Vec<String> = first.into_iter().map(|e| e.name).collect();
    while let Some(page) = lister.next_page(700).await.unwrap() {
        assert!(page.len() <= 700);
        seen.extend(page.into_iter().map(|e| e.name));
    }
    assert_eq!(seen.len(), 2501, "2500 objects and one subdirectory");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    assert!(seen.contains(&"sub".to_owned()));
    assert!(!seen.iter().any(|name| name.is_empty() || name == "many"));
    // 2500 keys + the marker + a prefix = 2502 results, 1000 a page.
    assert_eq!(store.stats().requests("ListObjectsV2") - before, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_and_dropped_uploads_leave_neither_object_nor_parts() {
    let Fixture { server, store } = fixture();
    put(&store, "keep.txt", b"old", 3).await;
    let data = pattern(12 * MIB, 5);

    // Explicit abort of a multipart upload, over an existing object.
    let mut writer = store.open_write(&key("keep.txt")).await.unwrap();
    writer
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    writer.abort().await.unwrap();
    assert!(server.multipart_uploads(BUCKET).is_empty());
    assert_eq!(server.get_object(BUCKET, "keep.txt").unwrap(), b"old");
    assert!(store.stats().requests("AbortMultipartUpload") >= 1);

    // Dropped without finish: aborted in the background.
    let mut writer = store.open_write(&key("dropped.bin")).await.unwrap();
    writer
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    eventually("the upload to start", Duration::from_secs(20), || {
        !server.multipart_uploads(BUCKET).is_empty()
    })
    .await;
    drop(writer);
    // What `wharf serve` waits for on its way out: once quiesce returns,
    // the dropped upload's abort has run.
    tokio::time::timeout(Duration::from_secs(30), store.quiesce())
        .await
        .expect("quiesce did not return");
    assert!(server.multipart_uploads(BUCKET).is_empty());
    assert_eq!(server.head_object(BUCKET, "dropped.bin"), None);

    // Small uploads (no multipart yet) leave nothing either.
    let mut writer = store.open_write(&key("small.txt")).await.unwrap();
    writer
        .write_at(0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    drop(writer);
    let mut writer = store.open_write(&key("small2.txt")).await.unwrap();
    writer
        .write_at(0, Bytes::from_static(b"abc"))
        .await
        .unwrap();
    writer.abort().await.unwrap();
    assert_eq!(server.list_keys(BUCKET, ""), vec!["keep.txt".to_owned()]);
    eventually(
        "upload buffers to be released",
        Duration::from_secs(10),
        || store.stats().upload_buffered == 0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_sequential_writes_are_unsupported_and_fail_the_writer() {
    let Fixture { server, store } = fixture();
    let mut writer = store.open_write(&key("seq.txt")).await.unwrap();
    writer
        .write_at(0, Bytes::from_static(b"0123456789"))
        .await
        .unwrap();
    let error = writer
        .write_at(20, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unsupported);
    assert!(
        error
            .message
            .contains("non-sequential write at offset 20 (expected 10)"),
        "{}",
        error.message
    );
    // The writer is failed from now on.
    let again = writer
        .write_at(10, Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(again.kind, ErrorKind::Unsupported);
    assert_eq!(
        writer.finish().await.unwrap_err().kind,
        ErrorKind::Unsupported
    );
    assert_eq!(server.head_object(BUCKET, "seq.txt"), None);

    // Rewriting from the start is just as unsupported.
    let mut writer = store.open_write(&key("seq.txt")).await.unwrap();
    writer.write_at(0, Bytes::from_static(b"ab")).await.unwrap();
    assert_eq!(
        writer
            .write_at(0, Bytes::from_static(b"ab"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Unsupported
    );
    assert_eq!(
        store.capabilities(),
        wharf_storage::Capabilities {
            random_write: false,
            rename_directory: false,
            set_times: false
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_encryption_is_sent_on_every_write() {
    let kms_key = "arn:aws:kms:us-east-1:000000000000:key/wharf-test";
    let Fixture { server, store } = fixture_with(|config| {
        config.server_side_encryption = Some(Sse::Kms {
            kms_key_id: Some(kms_key.to_owned()),
        });
        config.multipart_copy_threshold = 10 * MIB as u64;
        config.copy_part_size = 5 * MIB as u64;
    });
    put(&store, "small.txt", b"secret", 6).await;
    put(&store, "multi.bin", &pattern(11 * MIB, 6), 2 * MIB).await;
    // CopyObject, and (above the threshold) a multipart copy.
    store
        .copy(&key("small.txt"), &key("copied.txt"))
        .await
        .unwrap();
    store
        .copy(&key("multi.bin"), &key("copied.bin"))
        .await
        .unwrap();
    assert_eq!(store.stats().requests("CopyObject"), 1);
    assert_eq!(store.stats().requests("UploadPartCopy"), 3);
    store.create_dir(&key("folder")).await.unwrap();
    for object in [
        "small.txt",
        "multi.bin",
        "copied.txt",
        "copied.bin",
        "folder/",
    ] {
        let head = server.head_object(BUCKET, object).unwrap();
        assert_eq!(
            head.server_side_encryption.as_deref(),
            Some("aws:kms"),
            "{object}"
        );
        assert_eq!(head.kms_key_id.as_deref(), Some(kms_key), "{object}");
    }

    let Fixture { server, store } = fixture_with(|config| {
        config.server_side_encryption = Some(Sse::Aes256);
    });
    put(&store, "a.txt", b"a", 1).await;
    put(&store, "b.bin", &pattern(6 * MIB, 7), MIB).await;
    store.copy(&key("a.txt"), &key("c.txt")).await.unwrap();
    for object in ["a.txt", "b.bin", "c.txt"] {
        let head = server.head_object(BUCKET, object).unwrap();
        assert_eq!(
            head.server_side_encryption.as_deref(),
            Some("AES256"),
            "{object}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_and_rename_are_server_side() {
    let Fixture { server, store } = fixture();
    let data = pattern(7 * MIB, 8);
    put(&store, "src/a.bin", &data, MIB).await;
    put(&store, "src/b.txt", b"bee", 3).await;
    let before = store.stats();
    store
        .copy(&key("src/a.bin"), &key("dst/a.bin"))
        .await
        .unwrap();
    let after = store.stats();
    assert_eq!(
        after.requests("CopyObject") - before.requests("CopyObject"),
        1
    );
    assert_eq!(after.requests("GetObject"), before.requests("GetObject"));
    assert_eq!(server.get_object(BUCKET, "dst/a.bin").unwrap(), data);
    assert_eq!(server.get_object(BUCKET, "src/a.bin").unwrap(), data);

    // rename = copy + delete; refuses to replace unless asked.
    assert_eq!(
        store
            .rename(&key("src/b.txt"), &key("dst/a.bin"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::AlreadyExists
    );
    store
        .rename(&key("src/b.txt"), &key("dst/b.txt"), false)
        .await
        .unwrap();
    assert_eq!(server.head_object(BUCKET, "src/b.txt"), None);
    assert_eq!(server.get_object(BUCKET, "dst/b.txt").unwrap(), b"bee");
    store
        .rename(&key("dst/b.txt"), &key("dst/a.bin"), true)
        .await
        .unwrap();
    assert_eq!(server.get_object(BUCKET, "dst/a.bin").unwrap(), b"bee");
    assert_eq!(
        store
            .rename(&key("src"), &key("elsewhere"), false)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::Unsupported
    );
    assert_eq!(
        store
            .copy(&key("src/none"), &key("x"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_eq!(
        store.copy(&key("src"), &key("x")).await.unwrap_err().kind,
        ErrorKind::IsADirectory
    );
    assert_eq!(
        store
            .copy(&key("src/a.bin"), &key("dst"))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::IsADirectory
    );
    // Above the threshold (5 GiB by default; 10 MiB here) the copy is a
    // multipart upload of UploadPartCopy ranges.
    let mut small_threshold = config(&server);
    small_threshold.multipart_copy_threshold = 10 * MIB as u64;
    small_threshold.copy_part_size = 5 * MIB as u64;
    let big_copies = S3Store::new(small_threshold).unwrap();
    let big = pattern(12 * MIB + 3, 11);
    put(&big_copies, "src/big.bin", &big, 4 * MIB).await;
    big_copies
        .copy(&key("src/big.bin"), &key("dst/big.bin"))
        .await
        .unwrap();
    let stats = big_copies.stats();
    assert_eq!(stats.requests("UploadPartCopy"), 3);
    assert_eq!(stats.requests("CopyObject"), 0);
    assert_eq!(server.get_object(BUCKET, "dst/big.bin").unwrap(), big);
    assert!(server.multipart_uploads(BUCKET).is_empty());
    big_copies
        .rename(&key("dst/big.bin"), &key("dst/moved.bin"), false)
        .await
        .unwrap();
    assert_eq!(server.get_object(BUCKET, "dst/moved.bin").unwrap(), big);
    assert_eq!(server.head_object(BUCKET, "dst/big.bin"), None);

    // setstat is accepted and ignored.
    store
        .set_modified(&key("src/a.bin"), std::time::SystemTime::UNIX_EPOCH)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_with_special_characters_round_trip() {
    let Fixture { server, store } = fixture();
    let names = [
        "with space/a b.txt",
        "unicode/ünïcødé 文件.txt",
        "punct/a+b=c&d;e,f@g$h!i'j(k)l[m]~n%20o#p?q.txt",
    ];
    for (i, name) in names.iter().enumerate() {
        let data = pattern(100 + i, i as u64);
        put(&store, name, &data, 7).await;
        assert_eq!(server.get_object(BUCKET, name).unwrap(), data, "{name}");
        let reader = store.open_read(&key(name)).await.unwrap();
        let got = reader.read_at(3, 50, BytesMut::new()).await.unwrap();
        assert_eq!(&got[..], &data[3..53]);
    }
    // A multipart upload under such a key too.
    let data = pattern(6 * MIB, 9);
    put(&store, "with space/big ü+.bin", &data, MIB).await;
    assert_eq!(
        server
            .head_object(BUCKET, "with space/big ü+.bin")
            .unwrap()
            .size,
        data.len() as u64
    );
    let mut keys = server.list_keys(BUCKET, "");
    keys.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.push("with space/big ü+.bin".to_owned());
    expected.sort();
    assert_eq!(keys, expected);
    let listed = self::names(&store, "with space", 10).await;
    assert_eq!(
        listed
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect::<Vec<_>>(),
        vec!["a b.txt", "big ü+.bin"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_endpoint_fails_the_upload_in_bounded_time() {
    let Fixture { mut server, store } = fixture_with(|config| {
        config.request_timeout = Duration::from_secs(2);
        config.retries = 1;
    });
    let data = pattern(5 * MIB, 10);
    let mut writer = store.open_write(&key("dying/upload.bin")).await.unwrap();
    let mut offset = 0u64;
    for _ in 0..2 {
        writer
            .write_at(offset, Bytes::copy_from_slice(&data))
            .await
            .unwrap();
        offset += data.len() as u64;
    }
    let uploads = loop {
        let uploads = server.multipart_uploads(BUCKET);
        if !uploads.is_empty() {
            break uploads;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let upload_id = uploads[0].upload_id.clone();
    // A second upload, to be aborted explicitly once the endpoint is gone.
    let mut second = store.open_write(&key("dying/second.bin")).await.unwrap();
    second
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    eventually(
        "the second upload to start",
        Duration::from_secs(20),
        || server.multipart_uploads(BUCKET).len() == 2,
    )
    .await;
    server.kill();

    let started = Instant::now();
    let outcome = tokio::time::timeout(Duration::from_secs(60), async {
        for _ in 0..8 {
            writer
                .write_at(offset, Bytes::copy_from_slice(&data))
                .await?;
            offset += data.len() as u64;
        }
        writer.finish().await
    })
    .await
    .expect("the writer hung on a dead endpoint");
    let error = outcome.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable, "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(!error.message.contains(SECRET_ACCESS_KEY));

    // An explicit abort reports that the endpoint is gone (and keeps trying
    // in the background) instead of hanging.
    let aborted = tokio::time::timeout(Duration::from_secs(30), second.abort())
        .await
        .expect("abort hung");
    let error = aborted.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(
        error.message.contains("retried in the background"),
        "{error}"
    );

    // Other operations fail promptly too.
    let head = tokio::time::timeout(Duration::from_secs(30), store.head(&key("x")))
        .await
        .expect("head hung");
    assert_eq!(head.unwrap_err().kind, ErrorKind::Unavailable);

    // The abort could not reach the endpoint: an operator learns which
    // upload to clean up.
    let logs = logs();
    eventually(
        "a warning naming the upload",
        Duration::from_secs(30),
        || {
            let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
            text.lines().any(|line| {
                line.contains("WARN")
                    && line.contains(&upload_id)
                    && line.contains("dying/upload.bin")
                    && line.contains(BUCKET)
            })
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_debug_output_never_show_the_secret() {
    let Fixture { mut server, store } = fixture_with(|config| {
        config.bucket = "no-such-bucket".to_owned();
        config.retries = 0;
    });
    // A missing bucket is a configuration error, not a missing key.
    let error = store.head(&key("a/b")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Internal, "{error}");
    assert!(error.message.contains("NoSuchBucket"), "{error}");
    assert!(!error.message.contains(SECRET_ACCESS_KEY), "{error}");
    let error = store
        .list(&key("a"))
        .await
        .unwrap()
        .next_page(10)
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Internal, "{error}");
    assert!(!error.message.contains(SECRET_ACCESS_KEY), "{error}");
    let error = store.open_write(&key("a/c")).await.err().unwrap();
    assert_eq!(error.kind, ErrorKind::Internal, "{error}");
    server.kill();
    let error = store.head(&key("a/b")).await.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);
    assert!(!error.message.contains(SECRET_ACCESS_KEY), "{error}");

    let config = config(&server);
    let shown = format!("{config:?} {store:?}");
    assert!(!shown.contains(SECRET_ACCESS_KEY), "{shown}");
}

/// Without static keys the standard AWS chain signs: the environment, then
/// the shared credentials file. Each case runs in a child process (this test
/// binary again) with a controlled environment, because the environment of
/// a multi-threaded test cannot be changed safely. moto does not check
/// signatures, but without a credential the request cannot be signed at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_standard_chain_without_static_keys() {
    const TEST: &str = "credentials_come_from_the_standard_chain_without_static_keys";
    if let Some(case) = std::env::var_os("WHARF_S3_CHILD_CASE") {
        let endpoint = std::env::var("WHARF_S3_CHILD_ENDPOINT").unwrap();
        let mut config = S3Config::new(BUCKET);
        config.endpoint = Some(endpoint);
        config.upload_part_size = 5 * MIB;
        config.request_timeout = Duration::from_secs(5);
        config.retries = 0;
        let store = S3Store::new(config).unwrap();
        let result = store.head(&key("nothing")).await;
        if case == "none" {
            let error = result.unwrap_err();
            assert_eq!(error.kind, ErrorKind::PermissionDenied, "{error}");
            assert!(error.message.contains("sign"), "{error}");
        } else {
            assert_eq!(result.unwrap(), None);
            put(&store, "signed.txt", b"ok", 2).await;
        }
        return;
    }

    let Fixture { server, store: _ } = fixture();
    let home = tempfile::tempdir().unwrap();
    let credentials = home.path().join("credentials");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY_ID}\n\
             aws_secret_access_key = {SECRET_ACCESS_KEY}\n"
        ),
    )
    .unwrap();
    let cases: [(&str, Vec<(&str, String)>); 3] = [
        (
            "environment",
            vec![
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_owned()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
            ],
        ),
        (
            "profile",
            vec![(
                "AWS_SHARED_CREDENTIALS_FILE",
                credentials.display().to_string(),
            )],
        ),
        ("none", vec![]),
    ];
    for (case, vars) in cases {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("WHARF_S3_CHILD_CASE", case)
            .env("WHARF_S3_CHILD_ENDPOINT", server.endpoint())
            .envs(vars)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "case {case}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(server.list_keys(BUCKET, ""), vec!["signed.txt".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_last_object_of_a_directory_keeps_the_directory() {
    let Fixture { server, store } = fixture();
    // An upload into a directory that has no marker (a common prefix only).
    put(&store, "a/b/one.txt", b"1", 1).await;
    put(&store, "a/b/two.txt", b"2", 1).await;
    assert!(server.head_object(BUCKET, "a/b/").is_none());
    store.delete(&key("a/b/one.txt")).await.unwrap();
    // Another object remains: no marker needed.
    assert!(server.head_object(BUCKET, "a/b/").is_none());
    store.delete(&key("a/b/two.txt")).await.unwrap();
    // Now the directory would vanish; as on a filesystem, it stays.
    assert_eq!(
        store.head(&key("a/b")).await.unwrap().map(|m| m.kind),
        Some(Kind::Directory)
    );
    assert_eq!(
        names(&store, "a", 10).await,
        [("b".to_owned(), Kind::Directory, 0)]
    );
    // ... until it is removed; its parent stays too.
    store.delete_dir(&key("a/b")).await.unwrap();
    assert!(store.head(&key("a/b")).await.unwrap().is_none());
    assert_eq!(
        store.head(&key("a")).await.unwrap().map(|m| m.kind),
        Some(Kind::Directory)
    );
}
