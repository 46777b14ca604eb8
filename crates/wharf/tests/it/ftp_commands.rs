//! FTP control commands through the binary, over raw sockets: paths left
//! out, what replies quote, and passive ports that failed transfers close.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::policy::{SHARED_ROLE, add_scoped_user};
use crate::*;

/// How long a reply or a data connection may take (a deadline, not a wait).
const DEADLINE: Duration = Duration::from_secs(20);

/// Plain FTP with ONE passive port; alice and bob (PATH homes
/// /default/home/NAME under a shared role and the scope-down policy).
fn server() -> (Wharf, u16) {
    let ports = wharf_test_support::tools::free_port_range(1);
    let only = ports.split('-').next().unwrap().parse().unwrap();
    let wharf = prepare(&format!(
        "[protocols.ftp]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{ports}\"\n\n\
         [roles.transfer]\npolicies = [\"role.json\"]\n"
    ));
    std::fs::write(wharf.path("role.json"), SHARED_ROLE).unwrap();
    for user in ["alice", "bob"] {
        add_scoped_user(&wharf, user, &[]);
    }
    (wharf.start(), only)
}

/// A control connection driven by hand.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Control {
    fn login(wharf: &Wharf, user: &str) -> Control {
        let stream = TcpStream::connect(wharf.ftp.unwrap()).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut control = Control {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        assert!(control.reply().starts_with("220 "));
        assert!(control.cmd(&format!("USER {user}")).starts_with("331 "));
        assert!(control.cmd(&format!("PASS {user}-pw")).starts_with("230 "));
        control
    }

    fn send(&mut self, line: &[u8]) {
        let mut bytes = line.to_vec();
        bytes.extend_from_slice(b"\r\n");
        self.writer.write_all(&bytes).unwrap();
    }

    /// A whole reply as it came (every line must end with CRLF).
    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            self.reader.read_until(b'\n', &mut line).unwrap();
            let line = String::from_utf8_lossy(&line).into_owned();
            assert!(line.ends_with("\r\n"), "{all}{line:?}");
            all.push_str(&line);
            if line.len() >= 4 && line[..3] == all[..3] && line.as_bytes()[3] == b' ' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(line.as_bytes());
        self.reply()
    }

    /// EPSV, and a data connection to the port announced.
    fn data(&mut self) -> (u16, TcpStream) {
        let reply = self.cmd("EPSV");
        let port: u16 = reply
            .split("|||")
            .nth(1)
            .and_then(|rest| rest.split('|').next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("{reply}"));
        let data = TcpStream::connect(("127.0.0.1", port)).unwrap();
        data.set_read_timeout(Some(DEADLINE)).unwrap();
        (port, data)
    }
}

/// Whether the server closed (or reset) the connection.
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(error) => {
            error.kind() != std::io::ErrorKind::WouldBlock
                && error.kind() != std::io::ErrorKind::TimedOut
        }
        Ok(_) => false,
    }
}

/// RETR, STOR, DELE... without a path are 501: the home directory (whose
/// own key the scope-down policy does not grant) is neither touched nor
/// denied; and what STAT quotes reaches the wire without its CR.
#[test]
fn ftp_commands_without_their_path_are_501_and_deny_nothing() {
    let (wharf, _) = server();
    std::fs::create_dir_all(wharf.path("files/home/alice")).unwrap();
    std::fs::write(wharf.path("files/home/alice/f.txt"), b"data").unwrap();
    let mut alice = Control::login(&wharf, "alice");
    for verb in [
        "RETR", "STOR", "APPE", "DELE", "RNFR", "RNTO", "MKD", "RMD", "SIZE", "MDTM",
    ] {
        assert_eq!(
            alice.cmd(verb),
            "501 Syntax error in parameters or arguments.\r\n",
            "{verb}"
        );
    }
    // A path in the reply: CR and ESC as spaces.
    alice.send(b"STAT f.txt\r\x1b[2J/../f.txt");
    let stat = alice.reply();
    assert!(
        stat.starts_with("213-Status of f.txt  [2J/../f.txt:\r\n"),
        "{stat:?}"
    );
    // A denial that is logged, after all of the above: the only one.
    assert!(alice.cmd("DELE /default/home/bob/x").starts_with("550 "));
    wharf.wait_for_log("the DELE's ACCESS_DENIED", |l| {
        l["activity-type"] == "ACCESS_DENIED" && l["path"] == "/default/home/bob/x"
    });
    let denied = wharf.activities("ACCESS_DENIED");
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert!(wharf.activities("OPEN").is_empty());
    assert!(alice.cmd("QUIT").starts_with("221 "));
}

/// With one passive port for the server: a transfer that fails closes it at
/// once (the client's waiting connection with it), so the next transfer of
/// the session needs a new EPSV, and another session can have the port.
#[test]
fn ftp_a_failed_transfer_closes_its_passive_port() {
    let (wharf, only) = server();
    std::fs::create_dir_all(wharf.path("files/home/alice")).unwrap();
    std::fs::write(wharf.path("files/home/alice/f.txt"), b"data").unwrap();
    let mut alice = Control::login(&wharf, "alice");
    let mut bob = Control::login(&wharf, "bob");
    for failing in ["RETR missing.txt", "LIST missing", "RETR"] {
        let (port, mut waiting) = alice.data();
        assert_eq!(port, only);
        assert!(bob.cmd("EPSV").starts_with("425 "), "{failing}");
        let reply = alice.cmd(failing);
        assert!(reply.starts_with('5'), "{failing}: {reply}");
        assert!(
            closed(&mut waiting),
            "{failing}: the data connection stayed"
        );
        assert_eq!(
            alice.cmd("RETR f.txt"),
            "425 Use PASV or EPSV first.\r\n",
            "{failing}"
        );
        let (port, _) = bob.data();
        assert_eq!(port, only, "{failing}");
        assert!(bob.cmd("ABOR").starts_with("225 "));
    }
    // And the port still serves a transfer.
    let (_, mut data) = alice.data();
    assert!(alice.cmd("RETR f.txt").starts_with("150 "));
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"data");
    assert!(alice.reply().starts_with("226 "));
    assert!(alice.cmd("QUIT").starts_with("221 "));
    assert!(bob.cmd("QUIT").starts_with("221 "));
}
