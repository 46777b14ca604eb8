//! The defences of an internet-facing server (SPEC section 8): bans at
//! accept, the password-spray delay, connections that never log in, FTP
//! transfers that stall.

use std::time::{Duration, Instant};

use crate::*;

pub(crate) fn defences(args: &[&str]) -> std::process::Output {
    wharf_test_support::wharf::python(&py("defences.py"), args)
}

/// alice and bob; plain FTP and SFTP; `server` keys added to `[server]`.
fn server(server: &str) -> Wharf {
    let ports = wharf_test_support::tools::free_port_range(20);
    let wharf = prepare(&format!(
        "[protocols.ftp]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{ports}\"\n"
    ));
    wharf.add_server_keys(server);
    for user in ["alice", "bob"] {
        wharf.add_user(
            user,
            Some(&format!("{user}-pw")),
            &["--home-directory-mapping", &format!("/=/default/{user}")],
        );
    }
    wharf.start()
}

fn ftp_port(wharf: &Wharf) -> String {
    wharf.ftp.unwrap().port().to_string()
}

#[test]
fn repeated_failed_logins_ban_the_address_at_accept() {
    let wharf = server("ban_exempt = [\"127.0.0.3\"]");
    let port = ftp_port(&wharf);
    // The 21st connection after 20 wrong passwords is refused before the
    // greeting.
    let out = defences(&["ftp-guess", &port, "alice", "60", "127.0.0.1"]);
    let text = stdout(&out);
    assert!(text.starts_with("refused-at 21 "), "{text}{}", stderr(&out));
    eprintln!("the 21st bad password from one address: {}", text.trim());
    // The right password does not help a banned address; another address
    // is not affected, nor is SFTP spared for the banned one.
    let login = |bind: &str| {
        stdout(&defences(&["ftp-login", &port, "alice", "alice-pw", bind]))
            .trim()
            .to_owned()
    };
    assert_eq!(login("127.0.0.1"), "refused");
    assert_eq!(login("127.0.0.2"), "ok");
    let sftp = wharf.sftp_port().to_string();
    let out = defences(&["waits-for-close", &sftp, "127.0.0.1", "10"]);
    assert!(
        stdout(&out).starts_with("closed-after 0."),
        "{}",
        stdout(&out)
    );
    // An exempt address is never banned.
    let out = defences(&["ftp-guess", &port, "*", "40", "127.0.0.3"]);
    assert_eq!(stdout(&out).trim(), "never-refused");
    // Logged: the ban, and the refusals at accept.
    let ban = wharf.wait_for_log("the ban", |l| l["message"] == "address banned");
    assert_eq!(ban["source-ip"], "127.0.0.1");
    assert!(
        ban["reason"].as_str().unwrap().contains("banned for 900s"),
        "{ban}"
    );
    let refused = wharf.wait_for_refusal_at_accept("127.0.0.1");
    assert!(
        refused["reason"].as_str().unwrap().contains("banned"),
        "{refused}"
    );
}

#[test]
fn a_sprayed_password_is_slowed_never_locked_out() {
    // The attacker's addresses are exempt from bans: only the per-user
    // defence acts.
    let wharf = server("ban_exempt = [\"127.0.0.0/24\"]");
    let port = ftp_port(&wharf);
    let out = defences(&["ftp-guess", &port, "alice", "22", "127.0.0.5"]);
    assert_eq!(stdout(&out).trim(), "never-refused");
    let timed = |user: &str, password: &str| {
        let start = Instant::now();
        let out = defences(&["ftp-login", &port, user, password, "127.0.0.6"]);
        (stdout(&out).trim().to_owned(), start.elapsed())
    };
    let (outcome, took) = timed("alice", "alice-pw");
    assert_eq!(outcome, "ok", "alice is locked out");
    assert!(took >= Duration::from_millis(250), "no delay: {took:?}");
    let (outcome, _) = timed("bob", "bob-pw");
    assert_eq!(outcome, "ok");
}

#[test]
fn connections_that_never_log_in_are_closed_and_capped_per_address() {
    let wharf = server("login_grace_time = \"2s\"");
    for port in [wharf.sftp_port().to_string(), ftp_port(&wharf)] {
        let out = defences(&["waits-for-close", &port, "127.0.0.1", "20"]);
        let text = stdout(&out);
        let seconds: f64 = text
            .strip_prefix("closed-after ")
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!((1.5..15.0).contains(&seconds), "{text}");
    }
}

/// `defences.py silent`: `count` silent connections held from `bind`
/// until [`SilentFlood::finish`], with logins timed while they are held.
struct SilentFlood {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    input: std::process::ChildStdin,
    /// The script's first line: how many are open.
    opened: String,
}

impl SilentFlood {
    fn start(port: &str, count: usize, bind: &str) -> SilentFlood {
        use std::io::BufRead;
        let mut child = std::process::Command::new(wharf_test_support::tools::venv_python())
            .arg(py("defences.py"))
            .args(["silent", port, &count.to_string(), bind])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let opened = lines.next().unwrap().unwrap();
        let input = child.stdin.take().unwrap();
        SilentFlood {
            child,
            lines,
            input,
            opened,
        }
    }

    /// A paramiko login + listing from 127.0.0.1: "login-ms T".
    fn login(&mut self, port: &str, user: &str, password: &str) -> String {
        use std::io::Write;
        writeln!(self.input, "login {port} {user} {password}").unwrap();
        let login = self.lines.next().unwrap().unwrap();
        assert!(login.starts_with("login-ms "), "{login}");
        login
    }

    /// Closes the connections and checks the script ended well.
    fn finish(self) {
        let SilentFlood {
            mut child, input, ..
        } = self;
        drop(input);
        assert!(child.wait().unwrap().success());
    }
}

#[test]
fn silent_connections_from_one_address_do_not_lock_others_out() {
    let wharf = server("");
    let sftp = wharf.sftp_port().to_string();
    let mut flood = SilentFlood::start(&sftp, 40, "127.0.0.2");
    assert_eq!(
        flood.opened,
        format!(
            "open {} closed-at-once {}",
            wharf_listen::MAX_PENDING_PER_ADDRESS,
            40 - wharf_listen::MAX_PENDING_PER_ADDRESS
        )
    );
    let login = flood.login(&sftp, "alice", "alice-pw");
    eprintln!("a login while 32 silent connections are held: {login}");
    flood.finish();
}

#[test]
fn silent_connections_from_many_addresses_do_not_lock_a_real_user_out() {
    let wharf = server("admin_listen = \"127.0.0.1:0\"");
    let sftp = wharf.sftp_port().to_string();
    let count = wharf_listen::PENDING_FULL + 200;
    // One connection from each of `count` addresses: every one is accepted
    // by the kernel; the guard admits new addresses and, at PENDING_FULL,
    // evicts the heaviest address's oldest.
    let mut flood = SilentFlood::start(&sftp, count, "spread");
    assert!(flood.opened.starts_with("open "), "{}", flood.opened);
    let login = flood.login(&sftp, "alice", "alice-pw");
    eprintln!("a login while {count} silent connections from {count} addresses are held: {login}");
    let (evicted, pending) = scrape_guard(&wharf);
    flood.finish();
    assert!(evicted > 0.0, "nothing was evicted");
    assert!(
        pending <= wharf_listen::PENDING_FULL as f64,
        "{pending} connections waiting"
    );
}

/// The guard's eviction counter and pending gauge, from /metrics.
fn scrape_guard(wharf: &Wharf) -> (f64, f64) {
    let (_, samples) = crate::admin::scrape(&crate::admin::admin_address(wharf));
    (
        samples["wharf_refusals_total{reason=\"evicted\"}"],
        samples["wharf_connections_not_logged_in{}"],
    )
}

#[test]
fn an_ftp_transfer_that_moves_nothing_is_aborted_after_idle_timeout() {
    let wharf = server("idle_timeout = \"3s\"");
    let port = ftp_port(&wharf);
    std::fs::create_dir_all(wharf.path("files/alice")).unwrap();
    std::fs::write(wharf.path("files/alice/big.bin"), vec![1u8; 32 << 20]).unwrap();
    for command in ["STOR stalled.bin", "RETR big.bin"] {
        let out = defences(&["ftp-stalled", &port, "alice", "alice-pw", command]);
        let text = stdout(&out);
        assert!(
            text.starts_with("426 "),
            "{command}: {text}{}",
            stderr(&out)
        );
    }
    assert!(!wharf.path("files/alice/stalled.bin").exists());
    assert_eq!(wharf.activities("PARTIAL_CLOSE").len(), 2);
}

#[test]
fn concurrent_password_checks_are_bounded_and_a_real_login_gets_through() {
    // The attackers' addresses are exempt, so the hash queue alone acts.
    let wharf = server("ban_exempt = [\"127.0.0.0/24\"]");
    let port = ftp_port(&wharf);
    let before = wharf_test_support::process::peak_rss_kib(wharf.pid()) / 1024;
    let out = defences(&["password-storm", &port, "128", "bob", "bob-pw"]);
    let text = stdout(&out);
    eprintln!("{text}");
    let field = |name: &str| -> String {
        let mut words = text.split_whitespace();
        words.find(|w| *w == name);
        words.next().unwrap_or_default().to_owned()
    };
    assert_eq!(field("login"), "ok", "{text}{}", stderr(&out));
    let denied: usize = field("denied").parse().unwrap_or(0);
    let refused: usize = field("refused").parse().unwrap_or(0);
    assert_eq!(denied + refused, 128, "{text}");
    assert!(
        denied >= 64,
        "most guesses reach the password check: {text}"
    );
    // Unbounded, 128 concurrent argon2id checks need 128 x 19 MiB.
    let peak = wharf_test_support::process::peak_rss_kib(wharf.pid()) / 1024;
    assert!(
        peak < before + 400,
        "peak RSS {peak} MiB (before the storm {before} MiB)"
    );
    eprintln!("128 concurrent bad passwords: peak RSS {before} -> {peak} MiB");
}
