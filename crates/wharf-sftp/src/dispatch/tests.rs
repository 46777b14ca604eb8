#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use wharf_audit::{AuditLog, SessionFields};
use wharf_storage::filesystem::FilesystemStore;
use wharf_vfs::{
    AccessRequest, AuditContext, Authorizer, Denied, Mount, MountKind, Namespace, StoreHandle,
    UserFs, VirtualPath,
};

use super::*;
use crate::codec::*;
use crate::pipe::Pipe;

struct AllowAll;
impl Authorizer for AllowAll {
    fn authorize(&self, _: &AccessRequest<'_>) -> Result<(), Denied> {
        Ok(())
    }
}

/// The real pipe, with the window it would give back counted.
struct PipeInput {
    pipe: Arc<Pipe>,
    consumed: Arc<std::sync::atomic::AtomicUsize>,
}
impl Input for PipeInput {
    async fn next(&mut self) -> Option<Bytes> {
        self.pipe.next().await
    }

    async fn consumed(&mut self, bytes: usize) {
        self.consumed
            .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    async fn closed(&self) {
        self.pipe.closed().await;
    }
}

/// Replies to a channel; or, when `stuck`, a client that never opens its
/// window: every send waits until the connection is gone (as russh's
/// writer does), then fails.
struct ChunkOutput {
    tx: mpsc::UnboundedSender<Bytes>,
    stuck: Option<tokio_util::sync::CancellationToken>,
}
impl Output for ChunkOutput {
    async fn send(&mut self, data: Bytes) -> Result<(), ()> {
        if let Some(gone) = &self.stuck {
            gone.cancelled().await;
            return Err(());
        }
        self.tx.send(data).map_err(|_| ())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    input: Arc<Pipe>,
    /// The window given back so far.
    consumed: Arc<std::sync::atomic::AtomicUsize>,
    replies: mpsc::UnboundedReceiver<Bytes>,
    pending: BytesMut,
    session: tokio::task::JoinHandle<Ended>,
}

fn frame(body: BytesMut) -> Bytes {
    let mut packet = BytesMut::new();
    packet.put_u32(body.len() as u32);
    packet.extend_from_slice(&body);
    packet.freeze()
}

fn request(kind: u8, id: u32, fill: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    body.put_u32(id);
    fill(&mut body);
    frame(body)
}

fn put_str(buf: &mut BytesMut, s: &[u8]) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s);
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(None).await
    }

    async fn start_with(stuck: Option<tokio_util::sync::CancellationToken>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = Arc::new(StoreHandle {
            name: "s".into(),
            store: Arc::new(FilesystemStore::open(&root).unwrap()),
        });
        let namespace = Namespace::new(
            vec![Mount {
                entry: VirtualPath::root(),
                store,
                prefix: String::new(),
                kind: MountKind::Directory,
                inner_anchor: None,
            }],
            VirtualPath::root(),
        );
        let fs = UserFs::new(
            namespace,
            Arc::new(AllowAll),
            AuditContext {
                log: AuditLog::discard(),
                session: Arc::new(SessionFields::default()),
            },
            wharf_vfs::Quota::new(1024),
        );
        let input = Arc::new(Pipe::default());
        let consumed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, replies) = mpsc::unbounded_channel();
        let session = tokio::spawn(run(
            fs,
            "test".into(),
            wharf_vfs::Quota::new(1 << 20),
            PipeInput {
                pipe: input.clone(),
                consumed: consumed.clone(),
            },
            ChunkOutput {
                tx,
                stuck: stuck.clone(),
            },
        ));
        let mut harness = Harness {
            _dir: dir,
            root,
            input,
            consumed,
            replies,
            pending: BytesMut::new(),
            session,
        };
        let mut init = BytesMut::new();
        init.put_u8(SSH_FXP_INIT);
        init.put_u32(3);
        harness.send(frame(init)).await;
        if stuck.is_none() {
            let version = harness.reply().await;
            assert_eq!(version[0], SSH_FXP_VERSION);
        }
        harness
    }

    async fn send(&self, bytes: Bytes) {
        self.input.push(&bytes);
    }

    /// The next reply packet (type onwards), across output chunk boundaries.
    async fn reply(&mut self) -> Bytes {
        loop {
            if self.pending.len() >= 4 {
                let len = u32::from_be_bytes(self.pending[..4].try_into().unwrap()) as usize;
                if self.pending.len() >= 4 + len {
                    let mut packet = self.pending.split_to(4 + len);
                    let _ = packet.split_to(4);
                    return packet.freeze();
                }
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(10), self.replies.recv())
                    .await
                    .unwrap()
                    .unwrap();
            self.pending.extend_from_slice(&chunk);
        }
    }

    async fn status(&mut self) -> (u32, u32) {
        let reply = self.reply().await;
        assert_eq!(reply[0], SSH_FXP_STATUS, "{reply:?}");
        let id = u32::from_be_bytes(reply[1..5].try_into().unwrap());
        let code = u32::from_be_bytes(reply[5..9].try_into().unwrap());
        (id, code)
    }

    async fn open(&mut self, id: u32, path: &str, flags: u32) -> Bytes {
        self.send(request(SSH_FXP_OPEN, id, |b| {
            put_str(b, path.as_bytes());
            b.put_u32(flags);
            b.put_u32(0);
        }))
        .await;
        let reply = self.reply().await;
        assert_eq!(reply[0], SSH_FXP_HANDLE, "{reply:?}");
        let len = u32::from_be_bytes(reply[5..9].try_into().unwrap()) as usize;
        reply.slice(9..9 + len)
    }
}

#[tokio::test]
async fn pipelined_writes_in_split_chunks_land_in_order() {
    let mut h = Harness::start().await;
    let handle = h
        .open(1, "/f.bin", SSH_FXF_WRITE | SSH_FXF_CREAT | SSH_FXF_TRUNC)
        .await;
    let mut all = BytesMut::new();
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let data = vec![i as u8; 1000];
        expected.extend_from_slice(&data);
        all.extend_from_slice(&request(SSH_FXP_WRITE, 100 + i, |b| {
            put_str(b, &handle);
            b.put_u64(u64::from(i) * 1000);
            put_str(b, &data);
        }));
    }
    all.extend_from_slice(&request(SSH_FXP_CLOSE, 999, |b| put_str(b, &handle)));
    // Deliver the pipelined packets in odd-sized pieces.
    let all = all.freeze();
    for piece in all.chunks(777) {
        h.send(Bytes::copy_from_slice(piece)).await;
    }
    let mut ids = Vec::new();
    for _ in 0..51 {
        let (id, code) = h.status().await;
        assert_eq!(code, 0, "request {id}");
        ids.push(id);
    }
    assert_eq!(
        *ids.last().unwrap(),
        999,
        "CLOSE answered before its writes"
    );
    assert_eq!(std::fs::read(h.root.join("f.bin")).unwrap(), expected);
}

#[tokio::test]
async fn concurrent_reads_all_answered() {
    let mut h = Harness::start().await;
    let data: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(h.root.join("r.bin"), &data).unwrap();
    let handle = h.open(1, "/r.bin", SSH_FXF_READ).await;
    for i in 0..40u32 {
        h.send(request(SSH_FXP_READ, 10 + i, |b| {
            put_str(b, &handle);
            b.put_u64(u64::from(i) * 10_000);
            b.put_u32(10_000);
        }))
        .await;
    }
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        let reply = h.reply().await;
        assert_eq!(reply[0], SSH_FXP_DATA);
        let id = u32::from_be_bytes(reply[1..5].try_into().unwrap());
        seen.insert(id, reply.slice(9..));
    }
    for (i, (id, bytes)) in seen.iter().enumerate() {
        assert_eq!(*id, 10 + i as u32);
        assert_eq!(&bytes[..], &data[i * 10_000..(i + 1) * 10_000]);
    }
    h.send(request(SSH_FXP_READ, 77, |b| {
        put_str(b, &handle);
        b.put_u64(1 << 30);
        b.put_u32(100);
    }))
    .await;
    assert_eq!(h.status().await, (77, StatusCode::Eof as u32));
}

#[tokio::test]
async fn a_dropped_session_leaves_no_upload() {
    let mut h = Harness::start().await;
    let handle = h
        .open(1, "/partial.bin", SSH_FXF_WRITE | SSH_FXF_CREAT)
        .await;
    h.send(request(SSH_FXP_WRITE, 2, |b| {
        put_str(b, &handle);
        b.put_u64(0);
        put_str(b, &[1u8; 5000]);
    }))
    .await;
    assert_eq!(h.status().await, (2, 0));
    h.input.gone();
    assert_eq!(h.session.await.unwrap(), Ended::Eof);
    let entries: Vec<_> = std::fs::read_dir(&h.root).unwrap().collect();
    assert!(entries.is_empty(), "{entries:?}");
}

#[tokio::test]
async fn oversized_and_malformed_packets_end_the_session() {
    let h = Harness::start().await;
    let mut huge = BytesMut::new();
    huge.put_u32((MAX_PACKET_BYTES + 1) as u32);
    h.send(huge.freeze()).await;
    assert!(matches!(h.session.await.unwrap(), Ended::Protocol(m) if m.contains("larger")));

    let h = Harness::start().await;
    h.send(request(SSH_FXP_OPEN, 1, |b| b.put_u32(1000))).await;
    assert!(matches!(h.session.await.unwrap(), Ended::Protocol(m) if m.contains("malformed")));
}

#[tokio::test]
async fn invalid_handles_and_unknown_requests_get_status_replies() {
    let mut h = Harness::start().await;
    h.send(request(SSH_FXP_READ, 5, |b| {
        put_str(b, b"nope");
        b.put_u64(0);
        b.put_u32(10);
    }))
    .await;
    assert_eq!(h.status().await, (5, StatusCode::Failure as u32));
    h.send(request(SSH_FXP_CLOSE, 6, |b| put_str(b, b"\0\0\0\x09")))
        .await;
    assert_eq!(h.status().await, (6, StatusCode::Failure as u32));
    h.send(request(150, 7, |_| {})).await;
    assert_eq!(h.status().await, (7, StatusCode::OpUnsupported as u32));
    h.send(request(SSH_FXP_STAT, 8, |b| put_str(b, b"/missing")))
        .await;
    assert_eq!(h.status().await, (8, StatusCode::NoSuchFile as u32));
}

#[tokio::test]
async fn input_is_given_back_as_window_once_taken() {
    let mut h = Harness::start().await;
    let mut sent = 0;
    for i in 0..20u32 {
        let packet = request(SSH_FXP_REALPATH, i, |b| put_str(b, b"."));
        sent += packet.len();
        h.send(packet).await;
    }
    for _ in 0..20 {
        assert_eq!(h.reply().await[0], SSH_FXP_NAME);
    }
    // INIT (9 bytes) and every request were consumed.
    assert_eq!(
        h.consumed.load(std::sync::atomic::Ordering::Relaxed),
        sent + 9
    );
}

/// A client that asks for far more than the session may hold and never
/// reads a reply: the session stops taking its input (so its SSH window
/// closes) instead of buffering, and when it disconnects everything ends
/// at once: no waiting for the window, no handle left open.
// Paused time: a sleep returns only once every task is idle (blocked),
// which is the moment to look at what the session took.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_is_held_back_and_freed_when_it_leaves() {
    let gone = tokio_util::sync::CancellationToken::new();
    let h = Harness::start_with(Some(gone.clone())).await;
    std::fs::write(h.root.join("r.bin"), vec![7u8; 1 << 20]).unwrap();
    // OPEN is answered into the stuck output; handles are numbered from 1.
    h.send(request(SSH_FXP_OPEN, 1, |b| {
        put_str(b, b"/r.bin");
        b.put_u32(SSH_FXF_READ);
        b.put_u32(0);
    }))
    .await;
    let handle = 1u32.to_be_bytes();
    // 3000 READs of 255 KiB: about 750 MiB of replies, many times the budget.
    let mut sent = 9;
    for i in 0..3000u32 {
        let packet = request(SSH_FXP_READ, 10 + i, |b| {
            put_str(b, &handle);
            b.put_u64(0);
            b.put_u32(MAX_IO_BYTES as u32);
        });
        sent += packet.len();
        h.send(packet).await;
    }
    // The session takes input until its budget is spent, then stops.
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    let consumed = h.consumed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(consumed < sent, "took all {sent} bytes of input");
    // The client disconnects: the session ends promptly.
    h.input.gone();
    gone.cancel();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(3), h.session)
        .await
        .expect("the session did not end")
        .unwrap();
    assert_eq!(ended, Ended::Eof);
}

#[tokio::test]
async fn a_path_that_is_not_utf8_gets_an_error_and_the_session_goes_on() {
    let mut h = Harness::start().await;
    h.send(request(SSH_FXP_STAT, 3, |b| {
        put_str(b, &[b'/', 0xff, 0xfe])
    }))
    .await;
    assert_eq!(h.status().await, (3, StatusCode::BadMessage as u32));
    h.send(request(SSH_FXP_REALPATH, 4, |b| put_str(b, b".")))
        .await;
    assert_eq!(h.reply().await[0], SSH_FXP_NAME);
}
