//! Control commands driven by hand over raw sockets (plain FTP), where the
//! bytes on the wire are the point: what replies quote, ABOR, REST, paths
//! left out, and the life of passive ports.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::*;

/// A control connection driven by hand.
struct Raw {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

/// Runs `future`, failing the test after [`DEADLINE`].
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing within {DEADLINE:?}"))
}

impl Raw {
    /// Connected, greeted and logged in as `user`.
    async fn login(fx: &Fixture, user: &str) -> Raw {
        let stream = within("connect", TcpStream::connect(fx.addr))
            .await
            .unwrap();
        let (read, writer) = stream.into_split();
        let mut raw = Raw {
            reader: BufReader::new(read),
            writer,
        };
        assert!(raw.reply().await.starts_with("220 "));
        assert!(raw.cmd(&format!("USER {user}")).await.starts_with("331 "));
        assert!(
            raw.cmd(&format!("PASS {PASSWORD}"))
                .await
                .starts_with("230 ")
        );
        raw
    }

    /// Sends one command line (CRLF added), its bytes as given.
    async fn send(&mut self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).await.unwrap();
    }

    /// The next reply, whole (every line of a multi-line one), as it came:
    /// line ends included. Each line must end with CRLF.
    async fn reply_bytes(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let mut code: Option<Vec<u8>> = None;
        loop {
            let mut line = Vec::new();
            let n = within("reply", self.reader.read_until(b'\n', &mut line))
                .await
                .unwrap();
            assert!(n > 0, "the server closed; so far: {:?}", lossy(&all));
            assert!(line.ends_with(b"\r\n"), "{:?}", lossy(&line));
            all.extend_from_slice(&line);
            let first = code.get_or_insert_with(|| line[..3].to_vec());
            if line.len() >= 4 && line[..3] == first[..] && line[3] == b' ' {
                return all;
            }
        }
    }

    async fn reply(&mut self) -> String {
        lossy(&self.reply_bytes().await)
    }

    /// Sends a command; its reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(line.as_bytes()).await;
        self.reply().await
    }

    /// EPSV: the passive port announced.
    async fn epsv(&mut self) -> u16 {
        let reply = self.cmd("EPSV").await;
        assert!(reply.starts_with("229 "), "{reply}");
        reply
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"))
    }

    /// EPSV and a data connection to it.
    async fn data(&mut self) -> (u16, TcpStream) {
        let port = self.epsv().await;
        let data = within("data connection", TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap();
        (port, data)
    }

    /// A download over a new data connection: what came (150 then 226 are
    /// required).
    async fn retr(&mut self, name: &str) -> Vec<u8> {
        let (_, mut data) = self.data().await;
        let opening = self.cmd(&format!("RETR {name}")).await;
        assert!(opening.starts_with("150 "), "{opening}");
        let mut bytes = Vec::new();
        within("download", data.read_to_end(&mut bytes))
            .await
            .unwrap();
        let done = self.reply().await;
        assert!(done.starts_with("226 "), "{done}");
        bytes
    }

    async fn quit(mut self) {
        assert!(self.cmd("QUIT").await.starts_with("221 "));
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Whether the connection was closed by the server (EOF or reset), waiting
/// for it at most [`DEADLINE`].
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match within("close", stream.read(&mut byte)).await {
        Ok(0) | Err(_) => true,
        Ok(_) => false,
    }
}

/// Whether a socket listens on `port` of 127.0.0.1 (or the wildcard), in
/// this network namespace (`/proc/net/tcp`, `/proc/net/tcp6`).
fn listening(port: u16) -> bool {
    let wanted = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                // sl local_address rem_address st; 0A = LISTEN.
                fields.len() > 3
                    && fields[3] == "0A"
                    && fields[1].rsplit(':').next() == Some(wanted.as_str())
            })
    })
}

/// A STAT of a path quotes the client's text; a CR (or any control
/// character) in it reaches the wire as a space, as in every other reply,
/// and can neither end a line early nor forge a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_of_a_path_never_echoes_a_control_character() {
    let fx = start(Mode::Ftp).await;
    write_file(&fx.home("alice").join("odd\rname"), b"x");
    write_file(&fx.home("alice").join("plain.txt"), b"x");
    let mut raw = Raw::login(&fx, "alice").await;
    for (line, first) in [
        // An existing name that holds a CR (made outside wharf).
        (&b"STAT odd\rname"[..], "213-Status of odd name:\r\n"),
        // A path that only resolves once `..` drops what holds the CR:
        // with the CR raw, the line would end before "213 forged".
        (
            &b"STAT x\r213 forged\x1b[2J/.."[..],
            "213-Status of x 213 forged [2J/..:\r\n",
        ),
    ] {
        raw.send(line).await;
        let reply = raw.reply_bytes().await;
        let text = lossy(&reply);
        assert!(text.starts_with(first), "{text:?}");
        assert!(text.ends_with("213 End of status.\r\n"), "{text:?}");
        // CR only as the end of a line; no other control character.
        for reply_line in text.split_terminator("\r\n") {
            assert!(
                !reply_line.chars().any(|c| c.is_ascii_control()),
                "{reply_line:?} in {text:?}"
            );
        }
    }
    raw.quit().await;
    fx.stop().await;
}

/// ABOR is recognised by the parser's rule during a transfer as without
/// one: `" ABOR"` is an unknown command either way (so it does not abort a
/// transfer), `abor` (any case) is ABOR either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abor_is_recognised_the_same_during_a_transfer_and_without_one() {
    let fx = start(Mode::Ftp).await;
    // Bigger than what loopback socket buffers hold: the server is still
    // sending when the next line arrives.
    let data = random_bytes(48 << 20);
    write_file(&fx.home("alice").join("big.bin"), &data);
    let mut raw = Raw::login(&fx, "alice").await;

    // Without a transfer.
    assert!(raw.cmd(" ABOR").await.starts_with("500 "));
    assert!(raw.cmd("abor").await.starts_with("225 "));

    // During one, " ABOR" is not ABOR: the transfer goes on to its end,
    // then the line gets its 500.
    let (_, mut conn) = raw.data().await;
    let opening = raw.cmd("RETR big.bin").await;
    assert!(opening.starts_with("150 "), "{opening}");
    raw.send(b" ABOR").await;
    let mut got = Vec::new();
    within("download", conn.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got == data, "{} of {} bytes", got.len(), data.len());
    assert!(raw.reply().await.starts_with("226 "));
    assert!(raw.reply().await.starts_with("500 "));

    // "abor" is ABOR: 426 for the transfer, 226 for the ABOR.
    let (_, mut conn) = raw.data().await;
    let opening = raw.cmd("RETR big.bin").await;
    assert!(opening.starts_with("150 "), "{opening}");
    raw.send(b"abor").await;
    let aborted = raw.reply().await;
    assert!(aborted.starts_with("426 "), "{aborted}");
    assert!(raw.reply().await.starts_with("226 "));
    let mut got = Vec::new();
    let _ = within("aborted download", conn.read_to_end(&mut got)).await;
    assert!(got.len() < data.len(), "the whole file came after ABOR");
    raw.quit().await;
    fx.stop().await;
}

/// A REST applies to the next RETR, STOR or APPE only: a listing in
/// between (LIST, NLST, MLSD, STAT of a path), a failed transfer, or a
/// REST that is not an offset drops it. Commands that are no transfer
/// (NOOP, SIZE, EPSV) leave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_applies_to_the_next_transfer_only() {
    let fx = start(Mode::Ftp).await;
    let data = random_bytes(1000);
    write_file(&fx.home("alice").join("f.bin"), &data);
    let mut raw = Raw::login(&fx, "alice").await;

    // Kept through commands that are no transfer.
    assert!(raw.cmd("REST 100").await.starts_with("350 "));
    assert!(raw.cmd("NOOP").await.starts_with("200 "));
    assert!(raw.cmd("SIZE f.bin").await.starts_with("213 "));
    assert_eq!(raw.retr("f.bin").await, data[100..]);
    // Spent by it.
    assert_eq!(raw.retr("f.bin").await, data);

    for listing in ["LIST", "NLST", "MLSD"] {
        assert!(raw.cmd("REST 100").await.starts_with("350 "));
        let (_, mut conn) = raw.data().await;
        assert!(raw.cmd(listing).await.starts_with("150 "), "{listing}");
        let mut text = Vec::new();
        within("listing", conn.read_to_end(&mut text))
            .await
            .unwrap();
        assert!(lossy(&text).contains("f.bin"), "{listing}");
        assert!(raw.reply().await.starts_with("226 "), "{listing}");
        assert_eq!(raw.retr("f.bin").await, data, "REST survived {listing}");
    }

    assert!(raw.cmd("REST 100").await.starts_with("350 "));
    let stat = raw.cmd("STAT .").await;
    assert!(stat.starts_with("213-"), "{stat}");
    assert_eq!(raw.retr("f.bin").await, data, "REST survived STAT");

    assert!(raw.cmd("REST 100").await.starts_with("350 "));
    assert!(raw.cmd("RETR missing.bin").await.starts_with("550 "));
    assert_eq!(raw.retr("f.bin").await, data, "REST survived a failed RETR");

    assert!(raw.cmd("REST 100").await.starts_with("350 "));
    assert!(raw.cmd("REST -5").await.starts_with("501 "));
    assert_eq!(raw.retr("f.bin").await, data, "REST survived a bad REST");
    raw.quit().await;
    fx.stop().await;
}

/// Commands that need a path and got none are 501: never resolved to the
/// working directory, nothing touched, nothing denied or logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_without_their_path_are_501_and_touch_nothing() {
    let fx = start(Mode::Ftp).await;
    write_file(&fx.home("alice").join("keep.txt"), b"keep");
    write_file(&fx.home("dave").join("keep.txt"), b"keep");
    let before = fx.lines.all().len();
    // carol's policy denies deletes: DELE of her home would be denied.
    for user in ["alice", "dave", "carol"] {
        let mut raw = Raw::login(&fx, user).await;
        for verb in [
            "RETR", "STOR", "APPE", "DELE", "RNFR", "RNTO", "MKD", "XMKD", "RMD", "XRMD", "SIZE",
            "MDTM",
        ] {
            for line in [verb.to_owned(), format!("{verb} "), verb.to_lowercase()] {
                let reply = raw.cmd(&line).await;
                assert_eq!(
                    reply, "501 Syntax error in parameters or arguments.\r\n",
                    "{user}: {line:?}"
                );
            }
        }
        raw.quit().await;
    }
    // The logins and their ends only.
    let lines = fx.lines.all();
    for line in &lines[before..] {
        let activity = line["activity-type"].as_str().unwrap();
        assert!(["CONNECTED", "DISCONNECTED"].contains(&activity), "{line}");
    }
    assert!(fx.home("alice").join("keep.txt").exists());
    assert!(fx.home("dave").join("keep.txt").exists());
    fx.stop().await;
}

/// However a transfer command ends, its passive port is closed, with a
/// client connection waiting on it: the next transfer needs a new PASV or
/// EPSV and never gets that connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_command_closes_its_passive_port_however_it_ends() {
    let fx = start(Mode::Ftp).await;
    let data = random_bytes(5000);
    write_file(&fx.home("alice").join("f.bin"), &data);
    write_file(&fx.home("alice").join("dir/inside.txt"), b"x");
    let mut raw = Raw::login(&fx, "alice").await;
    for (line, code) in [
        ("RETR missing.bin", "550 "),
        ("RETR dir", "550 "),
        ("RETR", "501 "),
        ("STOR bad\u{1}name", "553 "),
        ("STOR", "501 "),
        ("APPE dir", "550 "),
        ("LIST missing", "550 "),
        ("NLST missing", "550 "),
        ("MLSD missing", "550 "),
        ("MLSD f.bin", "550 "),
    ] {
        // The client connects at once (as ftplib and lftp do), before the
        // command: the connection waits in the listener's queue.
        let (port, mut waiting) = raw.data().await;
        let reply = raw.cmd(line).await;
        assert!(reply.starts_with(code), "{line}: {reply}");
        assert!(
            closed_by_server(&mut waiting).await,
            "{line}: the waiting data connection was left open"
        );
        assert!(!listening(port), "{line}: port {port} still listens");
        let next = raw.cmd("RETR f.bin").await;
        assert_eq!(next, "425 Use PASV or EPSV first.\r\n", "after {line}");
    }
    // A transfer that succeeds closes it too (the port once its one
    // connection is taken, before 150).
    let (port, mut conn) = raw.data().await;
    assert!(raw.cmd("RETR f.bin").await.starts_with("150 "));
    assert!(!listening(port));
    let mut got = Vec::new();
    within("download", conn.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(got == data);
    assert!(raw.reply().await.starts_with("226 "));
    assert_eq!(
        raw.cmd("RETR f.bin").await,
        "425 Use PASV or EPSV first.\r\n"
    );
    // So does a new EPSV (the port before goes), and ABOR.
    let (first, mut waiting) = raw.data().await;
    let (second, _) = raw.data().await;
    assert_ne!(first, second);
    assert!(closed_by_server(&mut waiting).await);
    assert!(!listening(first));
    assert!(raw.cmd("ABOR").await.starts_with("225 "));
    assert!(!listening(second));
    assert_eq!(
        raw.cmd("RETR f.bin").await,
        "425 Use PASV or EPSV first.\r\n"
    );
    raw.quit().await;
    fx.stop().await;
}

/// With one passive port for the whole server, a failed transfer gives it
/// back at once: another session (or the same) gets it with its next EPSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transfer_leaves_no_listener_behind() {
    let range = wharf_test_support::tools::free_port_range(1);
    let (low, high) = range.split_once('-').unwrap();
    let ports = low.parse().unwrap()..=high.parse().unwrap();
    let only = *ports.start();
    let fx = start_with_ports(Mode::Ftp, ports).await;
    let mut first = Raw::login(&fx, "alice").await;
    let mut second = Raw::login(&fx, "bob").await;
    for line in ["RETR missing.bin", "LIST missing", "STOR", "DELE"] {
        let (port, mut waiting) = first.data().await;
        assert_eq!(port, only);
        // Held while the first session waits for its transfer.
        assert!(second.cmd("EPSV").await.starts_with("425 "), "{line}");
        let reply = first.cmd(line).await;
        assert!(reply.starts_with('5'), "{line}: {reply}");
        if line == "DELE" {
            // No transfer command: the port stays with its session, until
            // an ABOR.
            assert!(listening(only));
            assert!(second.cmd("EPSV").await.starts_with("425 "));
            assert!(first.cmd("ABOR").await.starts_with("225 "));
        }
        // Closed (the connection waiting on it with it), so free at once.
        assert!(closed_by_server(&mut waiting).await, "{line}");
        assert!(!listening(only), "{line}");
        assert_eq!(second.epsv().await, only, "{line}");
        assert!(second.cmd("ABOR").await.starts_with("225 "));
    }
    first.quit().await;
    second.quit().await;
    fx.stop().await;
}
