//! FTPS and FTP through the binary: curl and lftp, and the same user over
//! SFTP and FTPS.

use std::process::{Command, Stdio};

use wharf_test_support::wharf::curl;

use crate::*;

#[test]
fn the_same_user_reaches_the_same_files_over_sftp_and_ftps() {
    let wharf =
        with_alice("[protocols.ftps]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"41000-41100\"\n");
    let dir = wharf.dir.path();
    let ftps = wharf.ftps.unwrap();
    let base = format!("ftp://127.0.0.1:{}/", ftps.port());
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("via-ftps.bin"), &data).unwrap();
    let up = curl(
        &[
            "--ssl-reqd",
            "-k",
            "--user",
            "alice:alice-pw",
            "-T",
            "via-ftps.bin",
            &format!("{base}via-ftps.bin"),
        ],
        dir,
    );
    assert!(up.status.success(), "{}", stderr(&up));
    // Over SFTP, the file is there.
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("alice-pw".into()),
        "get via-ftps.bin back.bin\nput back.bin via-sftp.bin\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("back.bin")).unwrap(), data);
    // And what SFTP wrote is visible over FTPS.
    let list = curl(
        &["--ssl-reqd", "-k", "--user", "alice:alice-pw", &base],
        dir,
    );
    assert!(stdout(&list).contains("via-sftp.bin"), "{}", stdout(&list));
    let down = curl(
        &[
            "--ssl-reqd",
            "-k",
            "--user",
            "alice:alice-pw",
            "-o",
            "ftps-back.bin",
            &format!("{base}via-sftp.bin"),
        ],
        dir,
    );
    assert!(down.status.success(), "{}", stderr(&down));
    assert_eq!(std::fs::read(dir.join("ftps-back.bin")).unwrap(), data);
    // A wrong password is a 530 and an AUTH_FAILURE line with protocol FTPS.
    let wrong = curl(&["--ssl-reqd", "-k", "--user", "alice:nope", &base], dir);
    assert!(!wrong.status.success());
    let failure = wharf.wait_for_log("FTPS AUTH_FAILURE", |l| {
        l["activity-type"] == "AUTH_FAILURE" && l["protocol"] == "FTPS"
    });
    assert_eq!(failure["reason"], "wrong password");
    let close = wharf.wait_for_log("FTPS CLOSE", |l| {
        l["activity-type"] == "CLOSE" && l["protocol"] == "FTPS" && l["bytes-in"] == 2_000_000
    });
    assert_eq!(close["path"], "/default/alice/via-ftps.bin");
    // Plain (no TLS) login is refused on the FTPS port.
    let plain = curl(&["--user", "alice:alice-pw", &base], dir);
    assert!(!plain.status.success());
}

#[test]
fn lftp_over_ftps_and_curl_over_plain_ftp() {
    let wharf = with_alice(
        "[protocols.ftps]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"41200-41300\"\n[protocols.ftp]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"41301-41400\"\n",
    );
    assert!(
        wharf
            .stderr_lines()
            .iter()
            .any(|l| l.contains("plain FTP is enabled")),
        "{:?}",
        wharf.stderr_lines()
    );
    let dir = wharf.dir.path();
    std::fs::write(dir.join("l.txt"), b"lftp payload").unwrap();
    let script = format!(
        "set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no; set net:max-retries 1; \
         open -u alice,alice-pw -p {} 127.0.0.1; put l.txt; mkdir d; ls; get l.txt -o l.back; rm l.txt; rmdir d; bye",
        wharf.ftps.unwrap().port()
    );
    let out = Command::new("lftp")
        .args(["-c", &script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(std::fs::read(dir.join("l.back")).unwrap(), b"lftp payload");
    assert!(!wharf.path("files/alice/l.txt").exists());
    let ftp = format!("ftp://127.0.0.1:{}/", wharf.ftp.unwrap().port());
    std::fs::write(dir.join("p.txt"), b"plain").unwrap();
    let up = curl(
        &[
            "--user",
            "alice:alice-pw",
            "-T",
            "p.txt",
            &format!("{ftp}p.txt"),
        ],
        dir,
    );
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(
        std::fs::read(wharf.path("files/alice/p.txt")).unwrap(),
        b"plain"
    );
    wharf.wait_for_log("FTP CLOSE", |l| {
        l["activity-type"] == "CLOSE" && l["protocol"] == "FTP"
    });
}

/// `passive_ports` for a test server: a range of `len` ports on 127.0.0.1
/// that are free now (each probed by binding it), from a random start.
fn free_port_range(len: u16) -> String {
    for _ in 0..200 {
        let start: u16 = rand::random_range(20_000..60_000 - len);
        let probes: Vec<_> = (start..start + len)
            .map(|port| std::net::TcpListener::bind(("127.0.0.1", port)))
            .collect();
        if probes.iter().all(Result::is_ok) {
            return format!("{start}-{}", start + len - 1);
        }
    }
    panic!("no free range of {len} ports on 127.0.0.1");
}

/// rclone (Go's crypto/tls, one session cache for all its connections)
/// with several transfers at once: data connections resume the TLS
/// sessions of other control connections of the same user, which
/// `tls_session_resumption = "enforced"` (the default) accepts.
#[test]
fn rclone_copies_with_several_transfers_over_enforced_ftps() {
    let rclone = wharf_test_support::tools::require("rclone");
    let wharf = with_alice(&format!(
        "[protocols.ftps]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{}\"\n",
        free_port_range(200)
    ));
    let dir = wharf.dir.path();
    let port = wharf.ftps.unwrap().port();
    let obscured = Command::new(&rclone)
        .args(["obscure", "alice-pw"])
        .output()
        .unwrap();
    assert!(obscured.status.success(), "{}", stderr(&obscured));
    let env = [
        (
            "RCLONE_CONFIG",
            dir.join("rclone.conf").display().to_string(),
        ),
        ("RCLONE_CONFIG_X_TYPE", "ftp".to_owned()),
        ("RCLONE_CONFIG_X_HOST", "127.0.0.1".to_owned()),
        ("RCLONE_CONFIG_X_PORT", port.to_string()),
        ("RCLONE_CONFIG_X_USER", "alice".to_owned()),
        ("RCLONE_CONFIG_X_PASS", stdout(&obscured).trim().to_owned()),
    ];
    let run = |args: &[&str]| {
        let out = Command::new(&rclone)
            .args(args)
            .args([
                "--ftp-explicit-tls",
                "--ftp-no-check-certificate",
                "--transfers",
                "4",
                "--retries",
                "1",
                "--low-level-retries",
                "1",
                "--contimeout",
                "20s",
                "--timeout",
                "60s",
            ])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "rclone {args:?}: {}\n{}",
            stdout(&out),
            stderr(&out)
        );
        out
    };
    let source = dir.join("source");
    std::fs::create_dir_all(&source).unwrap();
    let mut files = Vec::new();
    for i in 0..12u32 {
        let data: Vec<u8> = (0..(i * 97_000 + 13)).map(|b| (b * 7 + i) as u8).collect();
        let name = format!("file-{i}.bin");
        std::fs::write(source.join(&name), &data).unwrap();
        files.push((name, data));
    }
    run(&["copy", "source", "X:upload"]);
    for (name, data) in &files {
        let stored = std::fs::read(wharf.path(&format!("files/alice/upload/{name}"))).unwrap();
        assert!(stored == *data, "{name} differs after the upload");
    }
    run(&["copy", "X:upload", "back"]);
    for (name, data) in &files {
        let back = std::fs::read(dir.join("back").join(name)).unwrap();
        assert!(back == *data, "{name} differs after the download");
    }
    let listed = run(&["lsf", "X:upload"]);
    assert_eq!(stdout(&listed).lines().count(), files.len());
    // Several control connections were used, and no data connection was
    // refused.
    let connected = wharf.activities("CONNECTED");
    assert!(
        connected.len() > 1,
        "one control connection only: {connected:?}"
    );
    let refused: Vec<_> = wharf
        .activities("ERROR")
        .into_iter()
        .filter(|l| l["message"] == "data connection refused")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}
