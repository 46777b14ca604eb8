//! FTP replies, and the one place where virtual filesystem errors become
//! reply codes.
//!
//! Our error messages go to the activity log, never to the client (under
//! LOGICAL mappings they could name store keys): the client gets the code
//! and a fixed text per kind.

use wharf_vfs::{Error, ErrorKind};

/// One reply: a code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: u16,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            text: text.into(),
        }
    }

    /// The reply on the wire. Multi-line text becomes `CODE-first`,
    /// ` middle` lines and `CODE last`; CR and LF inside a line never reach
    /// the wire as such (a file name cannot inject a reply).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            let line = line.trim_end_matches('\r');
            if i == last {
                out.extend_from_slice(format!("{} ", self.code).as_bytes());
            } else if i == 0 {
                out.extend_from_slice(format!("{}-", self.code).as_bytes());
            } else {
                out.push(b' ');
            }
            out.extend(line.bytes().map(|b| if b == b'\r' { b' ' } else { b }));
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// The reply for a virtual filesystem error: the code by kind, the text
/// [`Error::client_message`] (never a store's own message).
pub(crate) fn for_error(error: &Error) -> Reply {
    let code = match error.kind {
        ErrorKind::NotFound
        | ErrorKind::AlreadyExists
        | ErrorKind::NotADirectory
        | ErrorKind::IsADirectory
        | ErrorKind::DirectoryNotEmpty
        | ErrorKind::PermissionDenied => 550,
        ErrorKind::InvalidPath => 553,
        ErrorKind::Unsupported => 502,
        ErrorKind::NoSpace => 452,
        ErrorKind::Unavailable | ErrorKind::LimitReached => 450,
        ErrorKind::Internal => 451,
    };
    Reply::new(code, format!("{}.", error.client_message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        for (kind, expected) in [
            (ErrorKind::NotFound, 550),
            (ErrorKind::AlreadyExists, 550),
            (ErrorKind::NotADirectory, 550),
            (ErrorKind::IsADirectory, 550),
            (ErrorKind::DirectoryNotEmpty, 550),
            (ErrorKind::PermissionDenied, 550),
            (ErrorKind::InvalidPath, 553),
            (ErrorKind::Unsupported, 502),
            (ErrorKind::NoSpace, 452),
            (ErrorKind::Unavailable, 450),
            (ErrorKind::LimitReached, 450),
            (ErrorKind::Internal, 451),
        ] {
            let reply = for_error(&Error::new(kind, "s3://bucket/alice/secret: boom"));
            assert_eq!(reply.code, expected, "{kind:?}");
            assert!(!reply.text.contains("secret"), "{kind:?}");
        }
    }

    fn wire(reply: Reply) -> String {
        let mut out = Vec::new();
        reply.encode(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn single_and_multi_line_replies() {
        assert_eq!(wire(Reply::new(200, "OK")), "200 OK\r\n");
        assert_eq!(
            wire(Reply::new(211, "Features:\nUTF8\nEnd")),
            "211-Features:\r\n UTF8\r\n211 End\r\n"
        );
        // A CR in a name cannot end the line early.
        assert_eq!(wire(Reply::new(257, "\"/a\rb\"")), "257 \"/a b\"\r\n");
    }
}
