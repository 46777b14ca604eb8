//! SFTP version 3 wire format (draft-ietf-secsh-filexfer-02), both ways.
//!
//! Decoding works on `Bytes` so that WRITE data stays a slice of the
//! received packet (no copy); replies are encoded into `BytesMut` with the
//! length prefix written last. A malformed packet is a [`DecodeError`],
//! never a panic.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const SSH_FXP_INIT: u8 = 1;
pub const SSH_FXP_VERSION: u8 = 2;
pub const SSH_FXP_OPEN: u8 = 3;
pub const SSH_FXP_CLOSE: u8 = 4;
pub const SSH_FXP_READ: u8 = 5;
pub const SSH_FXP_WRITE: u8 = 6;
pub const SSH_FXP_LSTAT: u8 = 7;
pub const SSH_FXP_FSTAT: u8 = 8;
pub const SSH_FXP_SETSTAT: u8 = 9;
pub const SSH_FXP_FSETSTAT: u8 = 10;
pub const SSH_FXP_OPENDIR: u8 = 11;
pub const SSH_FXP_READDIR: u8 = 12;
pub const SSH_FXP_REMOVE: u8 = 13;
pub const SSH_FXP_MKDIR: u8 = 14;
pub const SSH_FXP_RMDIR: u8 = 15;
pub const SSH_FXP_REALPATH: u8 = 16;
pub const SSH_FXP_STAT: u8 = 17;
pub const SSH_FXP_RENAME: u8 = 18;
pub const SSH_FXP_READLINK: u8 = 19;
pub const SSH_FXP_SYMLINK: u8 = 20;
pub const SSH_FXP_STATUS: u8 = 101;
pub const SSH_FXP_HANDLE: u8 = 102;
pub const SSH_FXP_DATA: u8 = 103;
pub const SSH_FXP_NAME: u8 = 104;
pub const SSH_FXP_ATTRS: u8 = 105;
pub const SSH_FXP_EXTENDED: u8 = 200;
pub const SSH_FXP_EXTENDED_REPLY: u8 = 201;

pub const SSH_FXF_READ: u32 = 0x01;
pub const SSH_FXF_WRITE: u32 = 0x02;
pub const SSH_FXF_APPEND: u32 = 0x04;
pub const SSH_FXF_CREAT: u32 = 0x08;
pub const SSH_FXF_TRUNC: u32 = 0x10;
pub const SSH_FXF_EXCL: u32 = 0x20;

const ATTR_SIZE: u32 = 0x01;
const ATTR_UIDGID: u32 = 0x02;
const ATTR_PERMISSIONS: u32 = 0x04;
const ATTR_ACMODTIME: u32 = 0x08;
const ATTR_EXTENDED: u32 = 0x8000_0000;

/// Status codes (section 7 of the draft).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum StatusCode {
    Ok = 0,
    Eof = 1,
    NoSuchFile = 2,
    PermissionDenied = 3,
    Failure = 4,
    BadMessage = 5,
    OpUnsupported = 8,
}

/// The most bytes one client packet may have (the 4-byte length excluded).
/// OpenSSH's sftp-server accepts 256 KiB; we add room for the header.
pub const MAX_PACKET_BYTES: usize = 256 * 1024 + 1024;

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

type Result<T> = std::result::Result<T, DecodeError>;

/// File attributes as SFTP v3 carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub size: Option<u64>,
    pub uid_gid: Option<(u32, u32)>,
    pub permissions: Option<u32>,
    /// (atime, mtime), seconds since the epoch.
    pub times: Option<(u32, u32)>,
}

/// A client request. Paths are raw strings; the dispatcher normalises them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A well-formed request whose path is not UTF-8.
    NotUtf8,
    Open {
        path: String,
        flags: u32,
        attrs: Attrs,
    },
    Close {
        handle: Bytes,
    },
    Read {
        handle: Bytes,
        offset: u64,
        len: u32,
    },
    Write {
        handle: Bytes,
        offset: u64,
        data: Bytes,
    },
    Lstat {
        path: String,
    },
    Fstat {
        handle: Bytes,
    },
    Setstat {
        path: String,
        attrs: Attrs,
    },
    Fsetstat {
        handle: Bytes,
        attrs: Attrs,
    },
    Opendir {
        path: String,
    },
    Readdir {
        handle: Bytes,
    },
    Remove {
        path: String,
    },
    Mkdir {
        path: String,
        attrs: Attrs,
    },
    Rmdir {
        path: String,
    },
    Realpath {
        path: String,
    },
    Stat {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Readlink {
        path: String,
    },
    Symlink {
        link: String,
        target: String,
    },
    /// `posix-rename@openssh.com`.
    PosixRename {
        from: String,
        to: String,
    },
    /// `limits@openssh.com`.
    Limits,
    /// `fsync@openssh.com`.
    Fsync {
        handle: Bytes,
    },
    /// `expand-path@openssh.com`.
    ExpandPath {
        path: String,
    },
    /// Any other extended request.
    Extended {
        name: String,
    },
    /// A packet type we do not know.
    Unknown {
        kind: u8,
    },
}

fn need(buf: &Bytes, n: usize) -> Result<()> {
    if buf.remaining() < n {
        Err(DecodeError("packet is truncated"))
    } else {
        Ok(())
    }
}

fn get_u32(buf: &mut Bytes) -> Result<u32> {
    need(buf, 4)?;
    Ok(buf.get_u32())
}

fn get_u64(buf: &mut Bytes) -> Result<u64> {
    need(buf, 8)?;
    Ok(buf.get_u64())
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes> {
    let len = get_u32(buf)? as usize;
    need(buf, len)?;
    Ok(buf.split_to(len))
}

/// The decode error of a path that is not UTF-8: the packet is well formed,
/// so the request is answered with an error instead of closing the channel.
const NOT_UTF8: &str = "a path is not valid UTF-8";

fn get_string(buf: &mut Bytes) -> Result<String> {
    let bytes = get_bytes(buf)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError(NOT_UTF8))
}

fn get_attrs(buf: &mut Bytes) -> Result<Attrs> {
    let flags = get_u32(buf)?;
    let mut attrs = Attrs::default();
    if flags & ATTR_SIZE != 0 {
        attrs.size = Some(get_u64(buf)?);
    }
    if flags & ATTR_UIDGID != 0 {
        attrs.uid_gid = Some((get_u32(buf)?, get_u32(buf)?));
    }
    if flags & ATTR_PERMISSIONS != 0 {
        attrs.permissions = Some(get_u32(buf)?);
    }
    if flags & ATTR_ACMODTIME != 0 {
        attrs.times = Some((get_u32(buf)?, get_u32(buf)?));
    }
    if flags & ATTR_EXTENDED != 0 {
        let count = get_u32(buf)?;
        for _ in 0..count {
            get_bytes(buf)?;
            get_bytes(buf)?;
        }
    }
    Ok(attrs)
}

/// Decodes a request packet (type, id, body; the length prefix removed).
/// Returns the request id with the request; INIT has no id and is handled
/// by [`decode_init`].
pub fn decode_request(mut packet: Bytes) -> Result<(u32, Request)> {
    need(&packet, 5)?;
    let kind = packet.get_u8();
    let id = packet.get_u32();
    match decode_body(kind, &mut packet) {
        Ok(request) => Ok((id, request)),
        // A name in another encoding (an old client's Latin-1) is this
        // request's problem, not the session's.
        Err(DecodeError(NOT_UTF8)) => Ok((id, Request::NotUtf8)),
        Err(error) => Err(error),
    }
}

fn decode_body(kind: u8, buf: &mut Bytes) -> Result<Request> {
    let request = match kind {
        SSH_FXP_OPEN => Request::Open {
            path: get_string(buf)?,
            flags: get_u32(buf)?,
            attrs: get_attrs(buf)?,
        },
        SSH_FXP_CLOSE => Request::Close {
            handle: get_bytes(buf)?,
        },
        SSH_FXP_READ => Request::Read {
            handle: get_bytes(buf)?,
            offset: get_u64(buf)?,
            len: get_u32(buf)?,
        },
        SSH_FXP_WRITE => Request::Write {
            handle: get_bytes(buf)?,
            offset: get_u64(buf)?,
            data: get_bytes(buf)?,
        },
        SSH_FXP_LSTAT => Request::Lstat {
            path: get_string(buf)?,
        },
        SSH_FXP_FSTAT => Request::Fstat {
            handle: get_bytes(buf)?,
        },
        SSH_FXP_SETSTAT => Request::Setstat {
            path: get_string(buf)?,
            attrs: get_attrs(buf)?,
        },
        SSH_FXP_FSETSTAT => Request::Fsetstat {
            handle: get_bytes(buf)?,
            attrs: get_attrs(buf)?,
        },
        SSH_FXP_OPENDIR => Request::Opendir {
            path: get_string(buf)?,
        },
        SSH_FXP_READDIR => Request::Readdir {
            handle: get_bytes(buf)?,
        },
        SSH_FXP_REMOVE => Request::Remove {
            path: get_string(buf)?,
        },
        SSH_FXP_MKDIR => Request::Mkdir {
            path: get_string(buf)?,
            attrs: get_attrs(buf)?,
        },
        SSH_FXP_RMDIR => Request::Rmdir {
            path: get_string(buf)?,
        },
        SSH_FXP_REALPATH => Request::Realpath {
            path: get_string(buf)?,
        },
        SSH_FXP_STAT => Request::Stat {
            path: get_string(buf)?,
        },
        SSH_FXP_RENAME => Request::Rename {
            from: get_string(buf)?,
            to: get_string(buf)?,
        },
        SSH_FXP_READLINK => Request::Readlink {
            path: get_string(buf)?,
        },
        SSH_FXP_SYMLINK => Request::Symlink {
            link: get_string(buf)?,
            target: get_string(buf)?,
        },
        SSH_FXP_EXTENDED => {
            let name = get_string(buf)?;
            match name.as_str() {
                "posix-rename@openssh.com" => Request::PosixRename {
                    from: get_string(buf)?,
                    to: get_string(buf)?,
                },
                "limits@openssh.com" => Request::Limits,
                "fsync@openssh.com" => Request::Fsync {
                    handle: get_bytes(buf)?,
                },
                "expand-path@openssh.com" => Request::ExpandPath {
                    path: get_string(buf)?,
                },
                _ => Request::Extended { name },
            }
        }
        other => Request::Unknown { kind: other },
    };
    Ok(request)
}

/// Decodes INIT: the client's version.
pub fn decode_init(mut packet: Bytes) -> Result<u32> {
    need(&packet, 5)?;
    if packet.get_u8() != SSH_FXP_INIT {
        return Err(DecodeError("the first packet is not INIT"));
    }
    Ok(packet.get_u32())
}

/// A reply being encoded. `finish` writes the length prefix.
pub struct Reply {
    buf: BytesMut,
}

impl Reply {
    /// Starts a reply of `kind` for request `id`, with room for `extra` bytes.
    pub fn new(kind: u8, id: u32, extra: usize) -> Reply {
        let mut buf = BytesMut::with_capacity(9 + extra);
        buf.put_u32(0);
        buf.put_u8(kind);
        buf.put_u32(id);
        Reply { buf }
    }

    pub fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.put_u32(value);
        self
    }

    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.put_u64(value);
        self
    }

    pub fn string(&mut self, value: &[u8]) -> &mut Self {
        self.buf
            .put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        self.buf.put_slice(value);
        self
    }

    pub fn attrs(&mut self, attrs: &Attrs) -> &mut Self {
        let mut flags = 0;
        if attrs.size.is_some() {
            flags |= ATTR_SIZE;
        }
        if attrs.uid_gid.is_some() {
            flags |= ATTR_UIDGID;
        }
        if attrs.permissions.is_some() {
            flags |= ATTR_PERMISSIONS;
        }
        if attrs.times.is_some() {
            flags |= ATTR_ACMODTIME;
        }
        self.buf.put_u32(flags);
        if let Some(size) = attrs.size {
            self.buf.put_u64(size);
        }
        if let Some((uid, gid)) = attrs.uid_gid {
            self.buf.put_u32(uid);
            self.buf.put_u32(gid);
        }
        if let Some(permissions) = attrs.permissions {
            self.buf.put_u32(permissions);
        }
        if let Some((atime, mtime)) = attrs.times {
            self.buf.put_u32(atime);
            self.buf.put_u32(mtime);
        }
        self
    }

    pub fn finish(mut self) -> Bytes {
        let len = u32::try_from(self.buf.len() - 4).unwrap_or(u32::MAX);
        self.buf[..4].copy_from_slice(&len.to_be_bytes());
        self.buf.freeze()
    }
}

/// `STATUS` reply.
pub fn status(id: u32, code: StatusCode, message: &str) -> Bytes {
    let mut reply = Reply::new(SSH_FXP_STATUS, id, 12 + message.len());
    reply
        .u32(code as u32)
        .string(message.as_bytes())
        .string(b"en");
    reply.finish()
}

/// `HANDLE` reply.
pub fn handle(id: u32, handle: &[u8]) -> Bytes {
    let mut reply = Reply::new(SSH_FXP_HANDLE, id, 4 + handle.len());
    reply.string(handle);
    reply.finish()
}

/// `ATTRS` reply.
pub fn attrs(id: u32, attrs: &Attrs) -> Bytes {
    let mut reply = Reply::new(SSH_FXP_ATTRS, id, 32);
    reply.attrs(attrs);
    reply.finish()
}

/// `VERSION` reply with our extensions.
pub fn version(extensions: &[(&str, &str)]) -> Bytes {
    // The version (3) stands where other replies have the request id.
    let mut reply = Reply::new(SSH_FXP_VERSION, 3, 119);
    for (name, data) in extensions {
        reply.string(name.as_bytes()).string(data.as_bytes());
    }
    reply.finish()
}

/// The bytes of a `DATA` reply before its data.
const DATA_HEADER: usize = 13;

/// Starts a `DATA` reply to `id` with room for `len` bytes of data, which
/// the caller appends (a read straight into the packet buffer);
/// [`finish_data`] completes it.
pub fn start_data(id: u32, len: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(DATA_HEADER + len);
    buf.put_u32(0);
    buf.put_u8(SSH_FXP_DATA);
    buf.put_u32(id);
    buf.put_u32(0);
    buf
}

/// Completes a `DATA` reply begun by [`start_data`], or `None` if no data
/// was appended.
pub fn finish_data(mut buf: BytesMut) -> Option<Bytes> {
    let n = buf.len() - DATA_HEADER;
    if n == 0 {
        return None;
    }
    let total = u32::try_from(buf.len() - 4).unwrap_or(u32::MAX);
    buf[0..4].copy_from_slice(&total.to_be_bytes());
    buf[9..13].copy_from_slice(&u32::try_from(n).unwrap_or(0).to_be_bytes());
    Some(buf.freeze())
}

#[cfg(test)]
mod tests;
