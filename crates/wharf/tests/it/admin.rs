//! The admin endpoint: `/healthz` and `/metrics` (SPEC 2 and 6), scraped
//! and parsed as Prometheus would.

use std::collections::BTreeMap;

use crate::*;

/// `/healthz`'s status and body, and every sample of `/metrics`.
pub(crate) fn scrape(address: &str) -> (String, BTreeMap<String, f64>) {
    let out = wharf_test_support::wharf::python(&py("scrape.py"), &[address]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    let health = lines.next().unwrap_or_default().to_owned();
    let samples = lines
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    (health, samples)
}

pub(crate) fn admin_address(wharf: &Wharf) -> String {
    wharf
        .stderr_lines()
        .iter()
        .find_map(|l| l.strip_prefix("wharf: admin listening on "))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no admin address: {:?}", wharf.stderr_lines()))
}

#[test]
fn metrics_and_health_are_served_for_scraping() {
    let wharf = prepare("");
    wharf.add_server_keys("admin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"20s\"");
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &["--home-directory-mapping", "/=/default/alice"],
    );
    let mut wharf = wharf.start();
    let address = admin_address(&wharf);
    let (health, samples) = scrape(&address);
    assert_eq!(health, "healthz 200 ok");
    assert_eq!(samples["wharf_sessions_open{protocol=\"SFTP\"}"], 0.0);
    assert_eq!(samples["wharf_memory_budget_bytes{}"], 0.0);
    // A login, an upload, a denied read, a failed login.
    let dir = wharf.dir.path();
    std::fs::write(dir.join("up.bin"), vec![5u8; 123_456]).unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("alice-pw".into()),
        "put up.bin\n-get /nowhere/x.bin\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bad = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("wrong".into()),
        "ls\n",
        dir,
        &[],
    );
    assert!(!bad.status.success());
    wharf.wait_for_log("the end of the session", |l| {
        l["activity-type"] == "DISCONNECTED"
    });
    let (_, samples) = scrape(&address);
    let value = |name: &str| {
        samples
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
    };
    assert_eq!(
        value("wharf_logins_total{protocol=\"SFTP\",result=\"ok\"}"),
        1.0
    );
    assert!(value("wharf_logins_total{protocol=\"SFTP\",result=\"failed\"}") >= 1.0);
    assert_eq!(
        value("wharf_bytes_total{direction=\"in\",protocol=\"SFTP\"}"),
        123_456.0
    );
    assert_eq!(
        value("wharf_operations_total{operation=\"CLOSE\",protocol=\"SFTP\",result=\"ok\"}"),
        1.0
    );
    assert!(value("wharf_identity_provider_seconds_count{}") >= 2.0);
    assert!(value("wharf_failures_total{}") >= 1.0);
    assert_eq!(value("wharf_refusals_total{reason=\"banned\"}"), 0.0);
    assert_eq!(value("wharf_sessions_open{protocol=\"SFTP\"}"), 0.0);
    // While draining (SIGTERM with a session still open), /healthz is 503.
    let mut idle = std::process::Command::new("python3")
        .args(["-c", &format!(
            "import socket,sys,time\ns=socket.create_connection(('127.0.0.1',{}))\ns.recv(100)\nsys.stdout.write('connected\\n');sys.stdout.flush()\nsys.stdin.read()",
            wharf.sftp_port()
        )])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(idle.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "connected");
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &wharf.pid().to_string()])
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (health, _) = scrape(&address);
        if health.starts_with("healthz 503") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{health}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    drop(idle.stdin.take());
    let _ = idle.wait();
    assert!(wharf.signal_and_wait("TERM").success());
}
