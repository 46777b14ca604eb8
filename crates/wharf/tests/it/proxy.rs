//! Behind a load balancer (SPEC section 8, PROXY protocol): wharf with
//! `proxy_protocol = true` behind a real HAProxy
//! (`wharf_test_support::haproxy`), clients bound to other loopback
//! addresses (127.0.0.2, 127.0.0.3) so that their address can only reach
//! wharf through the header; and what a peer that is not a trusted balancer
//! gets.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_test_support::haproxy::{Haproxy, Header, Route};
use wharf_test_support::wharf::curl;

use crate::*;

/// `proxy_protocol = true` trusting `trusted`, `extra` sections, alice
/// (`alice-pw`, home `/default/alice`, with `alice_args` added); started.
fn behind_proxy(trusted: &str, server: &str, extra: &str, alice_args: &[&str]) -> Wharf {
    let wharf = prepare(extra);
    wharf.add_server_keys(&format!(
        "proxy_protocol = true\nproxy_trusted = [\"{trusted}\"]\nban_after_failures = 10\n{server}"
    ));
    let mut args = vec!["--home-directory-mapping", "/=/default/alice"];
    args.extend_from_slice(alice_args);
    wharf.add_user("alice", Some("alice-pw"), &args);
    let wharf = wharf.start();
    std::fs::create_dir_all(wharf.path("files/alice")).unwrap();
    wharf
}

/// OpenSSH `sftp -b BATCH` through `front`, from `bind`.
fn sftp_from(front: SocketAddr, bind: &str, batch: &str, dir: &Path) -> std::process::Output {
    sftp_batch(
        front.port(),
        "alice",
        &Login::Password("alice-pw".into()),
        batch,
        dir,
        &["-o", &format!("BindAddress={bind}")],
    )
}

/// The log lines of one kind from one client address.
fn from_address(wharf: &Wharf, activity: &str, ip: &str) -> Vec<Value> {
    wharf
        .activities(activity)
        .into_iter()
        .filter(|l| l["source-ip"] == ip)
        .collect()
}

/// Reads until the server closes the connection (EOF, or a reset when it
/// closed with bytes unread): what it sent, and when it closed.
fn until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("still open after {limit:?}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("still open after {limit:?}")
            }
            Err(_) => break,
        }
    }
    (received, start.elapsed())
}

#[test]
fn sftp_through_haproxy_is_the_client_s_address_everywhere() {
    // alice's session policy allows nothing unless aws:SourceIp is
    // 127.0.0.2: the policy sees the carried address too.
    let policy = r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}}]}"#;
    let wharf = behind_proxy("127.0.0.1/32", "", "", &["--policy", policy]);
    let sftp = wharf.sftp.unwrap();
    let haproxy = Haproxy::start(&[Route::to(sftp), Route::to(sftp).header(Header::V1)]);
    eprintln!("haproxy.cfg:\n{}", haproxy.config());
    let dir = wharf.dir.path();
    std::fs::write(dir.join("hello.txt"), b"hello").unwrap();

    // v2 header, from 127.0.0.2: allowed, and logged as 127.0.0.2.
    let out = sftp_from(haproxy.frontend(0), "127.0.0.2", "put hello.txt\nls\n", dir);
    assert!(out.status.success(), "{}{}", stderr(&out), haproxy.log());
    assert_eq!(
        std::fs::read(wharf.path("files/alice/hello.txt")).unwrap(),
        b"hello"
    );
    let connected = wharf.wait_for_log("CONNECTED from 127.0.0.2", |l| {
        l["activity-type"] == "CONNECTED" && l["source-ip"] == "127.0.0.2"
    });
    assert_eq!(connected["user"], "alice");
    assert_eq!(connected["protocol"], "SFTP");

    // v1 header, from 127.0.0.3: the same user, denied by aws:SourceIp.
    let out = sftp_from(
        haproxy.frontend(1),
        "127.0.0.3",
        "put hello.txt again.txt\n",
        dir,
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    wharf.wait_for_log("CONNECTED from 127.0.0.3", |l| {
        l["activity-type"] == "CONNECTED" && l["source-ip"] == "127.0.0.3"
    });
    let denied = wharf.wait_for_log("ACCESS_DENIED from 127.0.0.3", |l| {
        l["activity-type"] == "ACCESS_DENIED" && l["source-ip"] == "127.0.0.3"
    });
    assert_eq!(denied["user"], "alice");
    assert!(!wharf.path("files/alice/again.txt").exists());
    // No line of this server names the balancer's address.
    assert!(
        from_address(&wharf, "CONNECTED", "127.0.0.1").is_empty(),
        "{:#?}",
        wharf.log()
    );
}

#[test]
fn a_peer_that_is_not_a_trusted_balancer_gets_nothing() {
    // Trusting only 127.0.0.9: a direct connection from 127.0.0.1 is closed
    // before a byte is read, without a word (no SSH version line).
    let untrusting = behind_proxy("127.0.0.9/32", "", "", &[]);
    let mut direct = TcpStream::connect(untrusting.sftp.unwrap()).unwrap();
    let (received, took) = until_closed(&mut direct, Duration::from_secs(10));
    assert!(received.is_empty(), "{received:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // Even with a header, even LOCAL.
    let mut direct = TcpStream::connect(untrusting.sftp.unwrap()).unwrap();
    let _ = std::io::Write::write_all(&mut direct, b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00");
    let (received, _) = until_closed(&mut direct, Duration::from_secs(10));
    assert!(received.is_empty(), "{received:?}");
    let refused = untrusting.wait_for_log("the refusal", |l| {
        l["activity-type"] == "AUTH_FAILURE"
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("untrusted proxy"))
    });
    assert_eq!(refused["source-ip"], "127.0.0.1");
    drop(untrusting);

    // Trusting 127.0.0.1: a connection that sends no header is closed after
    // 3 s, again without a word; one that starts with SSH at once.
    let wharf = behind_proxy("127.0.0.1/32", "", "", &[]);
    let mut silent = TcpStream::connect(wharf.sftp.unwrap()).unwrap();
    let (received, took) = until_closed(&mut silent, Duration::from_secs(20));
    assert!(received.is_empty(), "{received:?}");
    assert!(
        (Duration::from_millis(2900)..Duration::from_secs(10)).contains(&took),
        "{took:?}"
    );
    let mut ssh = TcpStream::connect(wharf.sftp.unwrap()).unwrap();
    std::io::Write::write_all(&mut ssh, b"SSH-2.0-OpenSSH_9.2p1\r\n").unwrap();
    let (received, took) = until_closed(&mut ssh, Duration::from_secs(10));
    assert!(received.is_empty(), "{received:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let timeout = wharf.wait_for_log("the header timeout", |l| {
        l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no valid PROXY header: no complete header"))
    });
    assert_eq!(timeout["source-ip"], "127.0.0.1");
    wharf.wait_for_log("the refused SSH line", |l| {
        l["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not a PROXY protocol header"))
    });
    // Nothing was served.
    assert!(wharf.activities("CONNECTED").is_empty());
}

#[test]
fn bans_apply_to_the_carried_address_not_to_the_balancer() {
    let ports = wharf_test_support::tools::free_port_range(10);
    let wharf = behind_proxy(
        "127.0.0.1/32",
        "",
        &format!("[protocols.ftp]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{ports}\"\n"),
        &[],
    );
    let haproxy = Haproxy::start(&[
        Route::to(wharf.ftp.unwrap()),
        Route::to(wharf.sftp.unwrap()),
    ]);
    let ftp = haproxy.frontend(0).port().to_string();
    let defences = |args: &[&str]| {
        let out = wharf_test_support::wharf::python(&py("defences.py"), args);
        stdout(&out).trim().to_owned()
    };
    // Ten wrong passwords through HAProxy from 127.0.0.2 ban 127.0.0.2
    // (ban_after_failures = 10, its minimum).
    let guessed = defences(&["ftp-guess", &ftp, "alice", "15", "127.0.0.2"]);
    assert!(guessed.starts_with("refused-at 11 "), "{guessed}");
    let ban = wharf.wait_for_log("the ban", |l| l["message"] == "address banned");
    assert_eq!(ban["source-ip"], "127.0.0.2");
    // The right password does not help 127.0.0.2, over FTP or SFTP...
    assert_eq!(
        defences(&["ftp-login", &ftp, "alice", "alice-pw", "127.0.0.2"]),
        "refused"
    );
    let dir = wharf.dir.path();
    let out = sftp_from(haproxy.frontend(1), "127.0.0.2", "ls\n", dir);
    assert!(!out.status.success());
    // ...while 127.0.0.3, through the same balancer, logs in.
    assert_eq!(
        defences(&["ftp-login", &ftp, "alice", "alice-pw", "127.0.0.3"]),
        "ok"
    );
    let out = sftp_from(haproxy.frontend(1), "127.0.0.3", "ls\n", dir);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = wharf.wait_for_log("a refusal of 127.0.0.2", |l| {
        l["activity-type"] == "AUTH_FAILURE"
            && l["source-ip"] == "127.0.0.2"
            && l["reason"].as_str().is_some_and(|r| r.contains("banned"))
    });
    assert_eq!(refused["protocol"], "FTP");
}

#[test]
fn ftps_control_and_passive_data_connections_through_haproxy() {
    // The node listens on 127.0.0.3; HAProxy on 127.0.0.1: the control port,
    // and the passive ports forwarded to the same ports of the node. PASV
    // announces the balancer: without `passive_address`, the address the
    // client connected to, which the header carried.
    let ports = wharf_test_support::tools::free_port_range(10);
    let wharf = behind_proxy(
        "127.0.0.1/32",
        "",
        &format!("[protocols.ftps]\nlisten = \"127.0.0.3:0\"\npassive_ports = \"{ports}\"\n"),
        &[],
    );
    let haproxy = Haproxy::start(&[
        Route::to(wharf.ftps.unwrap()),
        Route::ports(&ports, "127.0.0.3".parse().unwrap()),
    ]);
    eprintln!("haproxy.cfg:\n{}", haproxy.config());
    let dir = wharf.dir.path();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("up.bin"), &data).unwrap();
    let base = format!("ftp://127.0.0.1:{}/", haproxy.frontend(0).port());
    let login = ["--ssl-reqd", "-k", "--user", "alice:alice-pw"];
    for (passive, name) in [("--ftp-pasv", "epsv.bin"), ("--disable-epsv", "pasv.bin")] {
        let mut args = vec!["--interface", "127.0.0.2", passive];
        args.extend_from_slice(&login);
        let url = format!("{base}{name}");
        let up = curl(&[&args[..], &["-T", "up.bin", &url]].concat(), dir);
        assert!(up.status.success(), "{}{}", stderr(&up), haproxy.log());
        let down = curl(&[&args[..], &["-o", "down.bin", &url]].concat(), dir);
        assert!(down.status.success(), "{}", stderr(&down));
        assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);
        let list = curl(&[&args[..], &["-v", base.as_str()]].concat(), dir);
        assert!(stdout(&list).contains(name), "{}", stdout(&list));
        if passive == "--disable-epsv" {
            // curl connects to the control connection's address whatever
            // PASV says: read the reply itself.
            assert!(
                stderr(&list).contains("227 Entering Passive Mode (127,0,0,1,"),
                "{}",
                stderr(&list)
            );
        }
    }
    let connected = from_address(&wharf, "CONNECTED", "127.0.0.2");
    assert!(
        connected.len() >= 6 && connected.iter().all(|l| l["protocol"] == "FTPS"),
        "{:#?}",
        wharf.log()
    );
    assert!(from_address(&wharf, "CONNECTED", "127.0.0.1").is_empty());
    assert!(
        wharf.activities("ERROR").is_empty(),
        "{:#?}",
        wharf.activities("ERROR")
    );
}

#[test]
fn check_config_names_the_missing_trusted_peers() {
    let wharf = prepare("");
    wharf.add_server_keys("proxy_protocol = true");
    let out = wharf.cli(&["check-config"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("server.proxy_trusted: required with proxy_protocol = true"),
        "{}",
        stderr(&out)
    );
    let out = wharf.cli_env(
        &["check-config"],
        None,
        &[("WHARF__SERVER__PROXY_TRUSTED", "[\"10.0.0.0/8\", \"nope\"]")],
    );
    assert!(
        stderr(&out).contains("server.proxy_trusted[1]"),
        "{}",
        stderr(&out)
    );
    let out = wharf.cli_env(
        &["check-config"],
        None,
        &[("WHARF__SERVER__PROXY_TRUSTED", "[\"10.0.0.0/8\"]")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// docs/deploy.md's health checks, through a real HAProxy: SFTP and the
/// FTPS control port checked on their own port (HAProxy sends a v2 `LOCAL`
/// header with each check), the passive range on the control port with
/// `check-send-proxy`. Every server comes UP, and the checks are served
/// quietly: no refusal counted, no log line.
#[test]
fn the_deployment_guide_s_health_checks_pass_quietly() {
    let ports = wharf_test_support::tools::free_port_range(10);
    let wharf = behind_proxy(
        "127.0.0.1/32",
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!("[protocols.ftps]\nlisten = \"127.0.0.3:0\"\npassive_ports = \"{ports}\"\n"),
        &[],
    );
    let ftps = wharf.ftps.unwrap();
    let haproxy = Haproxy::start(&[
        Route::to(wharf.sftp.unwrap()).checked(),
        Route::to(ftps).checked(),
        Route::ports(&ports, "127.0.0.3".parse().unwrap()).checked_on(ftps.port()),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let statuses = haproxy.server_statuses();
        if statuses.len() == 3 && statuses.iter().all(|s| s == "UP") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{statuses:?}\n{}\n{}",
            haproxy.config(),
            haproxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Two checks a server to come UP (HAProxy's `rise 2`): at least six
    // checks served. None was refused, none logged. (A check without a
    // header, which connects and closes at once, is quiet too: wharf counts
    // a peer that left without a byte as nothing.)
    let (_, samples) = crate::admin::scrape(&crate::admin::admin_address(&wharf));
    for reason in ["untrusted_proxy", "proxy_header", "login_timeout"] {
        assert_eq!(
            samples[&format!("wharf_refusals_total{{reason=\"{reason}\"}}")],
            0.0,
            "{reason}"
        );
    }
    assert!(wharf.log().is_empty(), "{:#?}", wharf.log());
}
