//! FTP replies: the codes this server sends, named once, how a reply goes
//! on the wire, and the one place where virtual filesystem errors become
//! reply codes.
//!
//! Our error messages go to the activity log, never to the client (under
//! LOGICAL mappings they could name store keys): the client gets the code
//! and a fixed text per kind.

use wharf_vfs::{Error, ErrorKind};

/// The reply codes this server sends (RFC 959, RFC 2228 for the security
/// extensions, RFC 2428 for EPSV), by what they mean here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub(crate) enum Code {
    /// About to open the data connection.
    OpeningData = 150,
    /// Command okay.
    Ok = 200,
    /// Command superfluous here (ALLO, ACCT).
    Superfluous = 202,
    /// System status (STAT without argument), FEAT.
    SystemStatus = 211,
    /// File status: SIZE, MDTM, STAT of a path.
    FileStatus = 213,
    /// HELP.
    Help = 214,
    /// SYST.
    SystemType = 215,
    /// The greeting.
    Ready = 220,
    /// QUIT.
    Goodbye = 221,
    /// Data connection open, no transfer in progress (ABOR without one).
    NoTransfer = 225,
    /// Closing the data connection: the transfer or ABOR succeeded.
    TransferDone = 226,
    /// Entering passive mode (PASV).
    Passive = 227,
    /// Entering extended passive mode (EPSV).
    ExtendedPassive = 229,
    /// Logged in.
    LoggedIn = 230,
    /// AUTH TLS accepted: the TLS handshake follows.
    AuthOk = 234,
    /// Requested file action done (CWD, DELE, RMD, RNTO, MLST).
    FileActionOk = 250,
    /// A path: created (MKD), or the working directory (PWD).
    Path = 257,
    /// User name okay, password needed.
    NeedPassword = 331,
    /// Pending further information (REST, RNFR).
    Pending = 350,
    /// Closing the control connection (shutdown, idle, login timeout).
    Closing = 421,
    /// Cannot open the data connection.
    CantOpenData = 425,
    /// Connection closed; transfer aborted.
    TransferAborted = 426,
    /// File action not taken: unavailable or busy for now.
    FileBusy = 450,
    /// Action aborted: local error.
    LocalError = 451,
    /// Insufficient storage.
    NoSpace = 452,
    /// Syntax error: unknown command, line too long.
    SyntaxError = 500,
    /// Syntax error in the arguments.
    BadArgument = 501,
    /// Command not implemented.
    NotImplemented = 502,
    /// Bad sequence of commands.
    BadSequence = 503,
    /// Command not implemented for that parameter.
    BadParameter = 504,
    /// Not logged in.
    NotLoggedIn = 530,
    /// Refused for policy reasons (the TLS rules of FTPS).
    PolicyRefused = 534,
    /// Protection level not supported.
    ProtectionNotSupported = 536,
    /// File unavailable: not found, no access, wrong kind.
    Unavailable = 550,
    /// File name not allowed.
    NameNotAllowed = 553,
}

impl Code {
    /// The number on the wire.
    pub(crate) fn number(self) -> u16 {
        self as u16
    }
}

/// One reply: a code and one or more lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) code: Code,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn new(code: Code, text: impl Into<String>) -> Reply {
        Reply {
            code,
            text: text.into(),
        }
    }

    /// The reply on the wire. Multi-line text becomes `CODE-first`,
    /// ` middle` lines and `CODE last`, each line through [`push_line`].
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.number();
        let lines: Vec<&str> = self.text.split('\n').collect();
        let last = lines.len() - 1;
        for (i, line) in lines.iter().enumerate() {
            if i == last {
                out.extend_from_slice(format!("{code} ").as_bytes());
            } else if i == 0 {
                out.extend_from_slice(format!("{code}-").as_bytes());
            } else {
                out.push(b' ');
            }
            push_line(out, line.trim_end_matches('\r'));
        }
    }
}

/// One line of reply text on the wire, then CRLF: the one place where what
/// a reply quotes (a client's argument, a path, a listing line) is made
/// safe. Control characters (CR and LF among them) become spaces, so no
/// text can end a line early, inject a reply, or reach a terminal raw.
/// (Text is UTF-8, so the Telnet IAC byte 0xFF never occurs.)
fn push_line(out: &mut Vec<u8>, line: &str) {
    out.extend(
        line.bytes()
            .map(|b| if b.is_ascii_control() { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// The first line of a multi-line reply whose middle is sent in parts (STAT
/// of a directory, page by page): `CODE-text`, through [`push_line`].
pub(crate) fn first_line(code: Code, text: &str) -> Vec<u8> {
    let mut out = format!("{}-", code.number()).into_bytes();
    push_line(&mut out, text);
    out
}

/// Listing text (CRLF-terminated lines) as the middle lines of a multi-line
/// reply: each line starts with a space and goes through [`push_line`].
pub(crate) fn middle_lines(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 40);
    for line in text.split_terminator("\r\n") {
        out.push(b' ');
        push_line(&mut out, line);
    }
    out
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
        | ErrorKind::PermissionDenied => Code::Unavailable,
        ErrorKind::InvalidPath => Code::NameNotAllowed,
        ErrorKind::Unsupported => Code::NotImplemented,
        ErrorKind::NoSpace => Code::NoSpace,
        ErrorKind::Unavailable | ErrorKind::LimitReached => Code::FileBusy,
        ErrorKind::Internal => Code::LocalError,
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
            assert_eq!(reply.code.number(), expected, "{kind:?}");
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
        assert_eq!(wire(Reply::new(Code::Ok, "OK")), "200 OK\r\n");
        assert_eq!(
            wire(Reply::new(Code::SystemStatus, "Features:\nUTF8\nEnd")),
            "211-Features:\r\n UTF8\r\n211 End\r\n"
        );
        // A CR in a name cannot end the line early.
        assert_eq!(
            wire(Reply::new(Code::Path, "\"/a\rb\"")),
            "257 \"/a b\"\r\n"
        );
    }

    #[test]
    fn streamed_multi_line_replies() {
        assert_eq!(
            first_line(Code::FileStatus, "Status of dir:"),
            b"213-Status of dir:\r\n"
        );
        assert_eq!(middle_lines("a\r\nb\r\n"), b" a\r\n b\r\n");
    }

    /// What a reply quotes goes through one sanitising, whichever way the
    /// reply is sent: no CR, LF or other control character reaches the
    /// wire inside a line.
    #[test]
    fn quoted_text_is_sanitised_the_same_in_every_reply() {
        let hostile = "a\rb\x00c\x1b[2Jd\x7fe\tf";
        let clean = "a b c [2Jd e f";
        assert_eq!(
            wire(Reply::new(Code::Unavailable, hostile)),
            format!("550 {clean}\r\n")
        );
        assert_eq!(
            first_line(Code::FileStatus, &format!("Status of {hostile}:")),
            format!("213-Status of {clean}:\r\n").into_bytes()
        );
        // A CR inside the argument cannot end the line and forge a reply.
        assert_eq!(
            first_line(Code::FileStatus, "Status of x\r213 forged:"),
            b"213-Status of x 213 forged:\r\n"
        );
        assert_eq!(
            middle_lines(&format!("{hostile}\r\nx\ny\r\n")),
            format!(" {clean}\r\n x y\r\n").into_bytes()
        );
    }
}
