//! libunftp's `StorageBackend` over the session's [`UserFs`].
//!
//! Every call resolves the client path with [`UserFs::path`] and goes
//! through `UserFs`, so policy checks, ACCESS_DENIED lines and the
//! OPEN/CLOSE/MKDIR/... lines are the same as over SFTP. The backend speaks
//! object terms to `UserFs` and FTP terms (libunftp's error kinds) to
//! libunftp, through [`crate::reply`].
//!
//! The data-channel methods (`list`, `list_fmt`, `nlst`, `get_into`, `get`,
//! `put`) first check how the transfer's data connection was secured (see
//! [`crate::tls`]); `list_vec`, which serves `STAT path` on the control
//! channel, does not.

use std::fmt::{self, Debug};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use unftp_core::storage::{
    Error as FtpError, ErrorKind as FtpKind, FEATURE_RESTART, Fileinfo, Permissions, Result,
    StorageBackend,
};
use wharf_audit::{Activity, Event};
use wharf_vfs::{Error, ErrorKind, FileReader, Kind, Metadata, VirtualPath};

use crate::auth::FtpUser;
use crate::reply::to_ftp;
use crate::server::Conn;
use crate::tls::{DataChannel, Resumption};

/// Bytes per read from, and per write to, the store.
const CHUNK: usize = 256 * 1024;
/// Entries asked of the store per listing page.
const LIST_PAGE: usize = 1000;
/// libunftp wants a whole directory in memory (a `Vec`, then one buffer of
/// text): listings stop here, with a log line saying so.
pub const MAX_LISTING_ENTRIES: usize = 100_000;

/// What `stat` and listings report, in libunftp's terms.
#[derive(Debug, Clone)]
pub struct FtpMetadata(Metadata);

impl unftp_core::storage::Metadata for FtpMetadata {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn is_dir(&self) -> bool {
        self.0.kind == Kind::Directory
    }

    fn is_file(&self) -> bool {
        self.0.kind == Kind::File
    }

    fn is_symlink(&self) -> bool {
        false
    }

    fn modified(&self) -> Result<SystemTime> {
        self.0
            .modified
            .ok_or_else(|| FtpError::from(FtpKind::PermanentFileNotAvailable))
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }

    fn permissions(&self) -> Permissions {
        Permissions(match (self.0.mode, self.0.kind) {
            (Some(mode), _) => mode & 0o777,
            (None, Kind::Directory) => 0o755,
            (None, Kind::File) => 0o644,
        })
    }
}

type Listing = Vec<Fileinfo<PathBuf, FtpMetadata>>;

/// One control connection's backend.
pub(crate) struct Backend {
    pub(crate) conn: Arc<Conn>,
}

impl Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("wharf")
    }
}

fn transfer_aborted() -> FtpError {
    FtpError::new(
        FtpKind::ConnectionClosed,
        "the transfer was aborted (server shutting down or session closed)",
    )
}

impl Backend {
    /// The virtual path of a libunftp path. libunftp joins most paths with
    /// its working directory itself; MLST and STAT pass the client's text as
    /// is, so a relative path is taken relative to the last CWD seen.
    fn resolve(&self, user: &FtpUser, path: &Path) -> Result<VirtualPath> {
        let text = path.to_str().ok_or_else(|| {
            to_ftp(Error::new(
                ErrorKind::InvalidPath,
                "path is not valid UTF-8",
            ))
        })?;
        let base = if text.starts_with('/') {
            VirtualPath::root()
        } else {
            self.conn.cwd()
        };
        user.fs().path(&base, text).map_err(to_ftp)
    }

    /// Refuses a transfer whose data connection breaks the FTPS rules:
    /// not TLS (PROT C, which libunftp lets through on EPSV), or, with
    /// `tls_session_resumption = enforced`, a full handshake.
    ///
    /// Called first, before the path is even looked at: every transfer
    /// consumes its passive port's handshake record.
    fn check_data_channel(&self, user: &FtpUser, operation: &str, path: &Path) -> Result<()> {
        let Some(tls) = &self.conn.tls else {
            return Ok(());
        };
        let reason = match tls.counters.take_data_channel() {
            DataChannel::Tls { resumed: true } => return Ok(()),
            DataChannel::Tls { resumed: false } if tls.resumption != Resumption::Enforced => {
                return Ok(());
            }
            DataChannel::Tls { resumed: false } => {
                "the data connection did not resume the control connection's TLS session (tls_session_resumption is enforced)"
            }
            DataChannel::Plain => {
                "the data connection is not protected by TLS (PROT P is required)"
            }
        };
        let audit = user.fs().audit();
        let path = path.to_string_lossy();
        audit.log.record(
            Activity::Error,
            &audit.session,
            &Event {
                path: Some(&path),
                operation: Some(operation),
                message: Some("data connection refused"),
                reason: Some(reason),
                ..Event::default()
            },
        );
        tracing::info!(user = %user, %path, "{operation}: data connection refused: {reason}");
        Err(FtpError::new(FtpKind::PermissionDenied, reason))
    }

    /// Copies a file from `start` to `output`, reading the next chunk while
    /// the previous one is written.
    async fn send(
        &self,
        reader: &FileReader,
        start: u64,
        output: &mut (impl AsyncWrite + Unpin + ?Sized),
    ) -> Result<u64> {
        let size = reader.size();
        let mut pos = start;
        let mut sent = 0u64;
        let mut spare = BytesMut::with_capacity(CHUNK);
        let first = chunk_len(pos, size);
        let mut current = if first == 0 {
            BytesMut::new()
        } else {
            reader
                .read_at(pos, first, BytesMut::with_capacity(CHUNK))
                .await
                .map_err(to_ftp)?
        };
        while !current.is_empty() {
            pos += current.len() as u64;
            let next_len = chunk_len(pos, size);
            let mut buf = std::mem::take(&mut spare);
            buf.clear();
            let (written, next) = tokio::join!(output.write_all(&current), async {
                if next_len == 0 {
                    Ok(buf)
                } else {
                    reader.read_at(pos, next_len, buf).await
                }
            });
            written.map_err(FtpError::from)?;
            sent += current.len() as u64;
            spare = std::mem::replace(&mut current, next.map_err(to_ftp)?);
        }
        output.flush().await.map_err(FtpError::from)?;
        Ok(sent)
    }
}

/// The entries of a directory, at most `cap` (a log line says when there
/// were more); a file lists as itself.
async fn listing(user: &FtpUser, path: &VirtualPath, cap: usize) -> Result<Listing> {
    let fs = user.fs();
    let mut listing = match fs.list(path).await {
        Ok(listing) => listing,
        Err(error) if error.kind == ErrorKind::NotADirectory => {
            let meta = fs.stat(path).await.map_err(to_ftp)?;
            if meta.is_dir() {
                return Err(to_ftp(error));
            }
            return Ok(vec![Fileinfo {
                path: PathBuf::from(path.file_name()),
                metadata: FtpMetadata(meta),
            }]);
        }
        Err(error) => return Err(to_ftp(error)),
    };
    let mut entries = Vec::new();
    let mut truncated = false;
    'pages: while let Some(page) = listing
        .next_page(LIST_PAGE.min(cap + 1 - entries.len()))
        .await
        .map_err(to_ftp)?
    {
        for entry in page {
            if entries.len() == cap {
                truncated = true;
                break 'pages;
            }
            entries.push(Fileinfo {
                path: PathBuf::from(entry.name),
                metadata: FtpMetadata(entry.meta),
            });
        }
    }
    if truncated {
        let message =
            format!("listing truncated at {cap} entries: FTP listings are built in memory");
        let audit = fs.audit();
        audit.log.record(
            Activity::Error,
            &audit.session,
            &Event {
                path: Some(path.as_str()),
                operation: Some("LIST"),
                message: Some(&message),
                ..Event::default()
            },
        );
        tracing::warn!(user = %user, %path, "{message}");
    }
    Ok(entries)
}

fn chunk_len(pos: u64, size: u64) -> usize {
    usize::try_from(size.saturating_sub(pos)).map_or(CHUNK, |left| left.min(CHUNK))
}

#[async_trait]
impl StorageBackend<FtpUser> for Backend {
    type Metadata = FtpMetadata;

    fn name(&self) -> &str {
        "wharf"
    }

    fn supported_features(&self) -> u32 {
        // REST for downloads; REST + STOR is refused in `put`.
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<FtpMetadata> {
        let path = self.resolve(user, path.as_ref())?;
        let meta = user.fs().stat(&path).await.map_err(to_ftp)?;
        Ok(FtpMetadata(meta))
    }

    async fn list<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<Listing>
    where
        <Self as StorageBackend<FtpUser>>::Metadata: unftp_core::storage::Metadata,
    {
        self.check_data_channel(user, "LIST", path.as_ref())?;
        let path = self.resolve(user, path.as_ref())?;
        listing(user, &path, MAX_LISTING_ENTRIES).await
    }

    /// `STAT path`: a listing over the control channel.
    async fn list_vec<P>(&self, user: &FtpUser, path: P) -> Result<Vec<String>>
    where
        P: AsRef<Path> + Send + Debug,
        Self::Metadata: unftp_core::storage::Metadata + 'static,
    {
        let path = self.resolve(user, path.as_ref())?;
        let entries = listing(user, &path, MAX_LISTING_ENTRIES).await?;
        Ok(entries.iter().map(ToString::to_string).collect())
    }

    async fn get_into<'a, P, W: ?Sized>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
        output: &'a mut W,
    ) -> Result<u64>
    where
        W: AsyncWrite + Unpin + Sync + Send,
        P: AsRef<Path> + Send + Debug,
    {
        self.check_data_channel(user, "RETR", path.as_ref())?;
        let path = self.resolve(user, path.as_ref())?;
        let _transfer = self.conn.transfer();
        let reader = user.fs().open_read(&path).await.map_err(to_ftp)?;
        let abort = self.conn.abort.clone();
        let result = tokio::select! {
            result = self.send(&reader, start_pos, output) => result,
            () = abort.cancelled() => Err(transfer_aborted()),
        };
        if result.is_ok() {
            reader.close();
        }
        // Dropped unclosed: PARTIAL_CLOSE.
        result
    }

    /// A reader over a file (libunftp uses it for SITE MD5, which is off).
    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn AsyncRead + Send + Sync + Unpin>> {
        self.check_data_channel(user, "RETR", path.as_ref())?;
        let path = self.resolve(user, path.as_ref())?;
        let reader = user.fs().open_read(&path).await.map_err(to_ftp)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(2);
        let conn = self.conn.clone();
        tokio::spawn(async move {
            let _transfer = conn.transfer();
            let size = reader.size();
            let mut pos = start_pos;
            loop {
                let len = chunk_len(pos, size);
                if len == 0 {
                    reader.close();
                    return;
                }
                let read = tokio::select! {
                    read = reader.read_at(pos, len, BytesMut::with_capacity(len)) => read,
                    () = conn.abort.cancelled() => return,
                };
                let item = match read {
                    Ok(buf) if buf.is_empty() => {
                        reader.close();
                        return;
                    }
                    Ok(buf) => {
                        pos += buf.len() as u64;
                        Ok(buf.freeze())
                    }
                    Err(error) => Err(io::Error::other(error)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Box::new(tokio_util::io::StreamReader::new(stream)))
    }

    /// STOR: streams the data connection into a new file, made visible only
    /// when the data connection ends cleanly. A broken transfer (a reset,
    /// TLS without close_notify, an abort) leaves nothing behind.
    async fn put<P: AsRef<Path> + Send + Debug, R: AsyncRead + Send + Sync + Unpin + 'static>(
        &self,
        user: &FtpUser,
        input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        self.check_data_channel(user, "STOR", path.as_ref())?;
        let path = self.resolve(user, path.as_ref())?;
        if start_pos > 0 {
            // REST n + STOR, and APPE to a non-empty file (libunftp turns
            // APPE into a write at the file's size).
            return Err(to_ftp(Error::new(
                ErrorKind::Unsupported,
                "appending to or resuming an upload is not supported",
            )));
        }
        let _transfer = self.conn.transfer();
        let mut writer = user
            .fs()
            .open_write(&path, "CREATE|TRUNCATE|WRITE")
            .await
            .map_err(to_ftp)?;
        let mut input = input;
        let abort = self.conn.abort.clone();
        let copied = tokio::select! {
            copied = async {
                let mut offset = 0u64;
                loop {
                    let mut buf = BytesMut::with_capacity(CHUNK);
                    let mut eof = false;
                    while buf.len() < CHUNK {
                        // Any failure of the data connection (a reset, TLS
                        // ending without close_notify) aborts the upload.
                        let read = input
                            .read_buf(&mut buf)
                            .await
                            .map_err(|e| FtpError::new(FtpKind::ConnectionClosed, e))?;
                        if read == 0 {
                            eof = true;
                            break;
                        }
                    }
                    if !buf.is_empty() {
                        let len = buf.len() as u64;
                        writer.write_at(offset, buf.freeze()).await.map_err(to_ftp)?;
                        offset += len;
                    }
                    if eof {
                        return Ok::<u64, FtpError>(offset);
                    }
                }
            } => copied,
            () = abort.cancelled() => Err(transfer_aborted()),
        };
        match copied {
            Ok(bytes) => {
                writer.close().await.map_err(to_ftp)?;
                Ok(bytes)
            }
            Err(error) => {
                writer.abort().await;
                Err(error)
            }
        }
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let path = self.resolve(user, path.as_ref())?;
        user.fs().remove(&path).await.map_err(to_ftp)
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let path = self.resolve(user, path.as_ref())?;
        user.fs().mkdir(&path).await.map_err(to_ftp)
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        let from = self.resolve(user, from.as_ref())?;
        let to = self.resolve(user, to.as_ref())?;
        // Like rename(2) and other FTP servers: the target is replaced.
        user.fs().rename(&from, &to, true).await.map_err(to_ftp)
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let path = self.resolve(user, path.as_ref())?;
        user.fs().rmdir(&path).await.map_err(to_ftp)
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let path = self.resolve(user, path.as_ref())?;
        let meta = user.fs().stat(&path).await.map_err(to_ftp)?;
        if !meta.is_dir() {
            return Err(to_ftp(Error::new(
                ErrorKind::NotADirectory,
                format!("{path}: not a directory"),
            )));
        }
        self.conn.set_cwd(path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use wharf_audit::AuditLog;
    use wharf_identity::service_managed::{NewUser, ServiceManaged, UserStore};
    use wharf_identity::{Credential, Password, Protocol};
    use wharf_session::{ConnInfo, Gateway, GatewayConfig};
    use wharf_storage::filesystem::FilesystemStore;
    use wharf_vfs::StoreHandle;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// alice, chrooted to a filesystem store's `alice/`, logged in.
    async fn alice(dir: &Path, lines: &Lines) -> FtpUser {
        let users = UserStore::open_sqlite(&dir.join("users.db")).await.unwrap();
        users
            .add(&NewUser {
                username: "alice".into(),
                password: Some(Password::new("pw")),
                home_directory_type: "LOGICAL".into(),
                home_directory_details: Some(
                    serde_json::json!([{"Entry": "/", "Target": "/default/alice"}]),
                ),
                ..NewUser::default()
            })
            .await
            .unwrap();
        let root = dir.join("default");
        std::fs::create_dir_all(root.join("alice")).unwrap();
        let store = Arc::new(StoreHandle {
            name: "default".into(),
            store: Arc::new(FilesystemStore::open(&root).unwrap()),
        });
        let gateway = Gateway::new(GatewayConfig {
            server_id: "s-unit".into(),
            provider: Arc::new(ServiceManaged::new(users, Duration::from_secs(5))),
            stores: BTreeMap::from([("default".to_owned(), store)]),
            roles: BTreeMap::new(),
            bucket_policies: BTreeMap::new(),
            audit: AuditLog::to_writer(Box::new(lines.clone())),
            max_sessions_per_user: 0,
        });
        let conn = ConnInfo {
            session_id: "1".into(),
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            protocol: Protocol::Ftps,
            client: None,
            secure_transport: true,
        };
        let fields = gateway.session_fields(&conn);
        let identity = gateway
            .authenticate(
                &fields,
                &conn,
                "alice",
                Credential::Password(Password::new("pw")),
                "password",
            )
            .await
            .unwrap();
        let session = gateway
            .open_session(&fields, &conn, identity, "password", None)
            .unwrap();
        FtpUser::new(session)
    }

    #[tokio::test]
    async fn listings_stop_at_the_cap_and_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let lines = Lines::default();
        let user = alice(dir.path(), &lines).await;
        for i in 0..7 {
            std::fs::write(dir.path().join(format!("default/alice/f{i}")), b"x").unwrap();
        }
        let root = VirtualPath::root();
        assert_eq!(listing(&user, &root, 7).await.unwrap().len(), 7);
        assert!(lines.0.lock().is_empty());
        let capped = listing(&user, &root, 5).await.unwrap();
        assert_eq!(capped.len(), 5);
        let text = String::from_utf8(lines.0.lock().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["activity-type"], "ERROR");
        assert_eq!(line["operation"], "LIST");
        assert_eq!(
            line["message"],
            "listing truncated at 5 entries: FTP listings are built in memory"
        );
        // A file lists as itself.
        let file = user.fs().path(&root, "f3").unwrap();
        let single = listing(&user, &file, 5).await.unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].path, PathBuf::from("f3"));
    }
}
