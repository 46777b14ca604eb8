//! Hostile clients (issue: a client that disconnects with replies pending
//! leaked the whole session): every way a session ends releases everything
//! within seconds and logs it.

use std::time::Duration;

use wharf_test_support::process::{open_fds as fds, rss_kib, within};

use crate::*;

/// A server where alice may have one session at a time, with a 64 MiB file.
fn one_session_each() -> Wharf {
    let wharf = prepare("");
    wharf.add_server_keys("max_sessions_per_user = 1");
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &["--home-directory-mapping", "/=/default/alice"],
    );
    let wharf = wharf.start();
    std::fs::create_dir_all(wharf.path("files/alice")).unwrap();
    std::fs::write(wharf.path("files/alice/big.bin"), vec![7u8; 64 << 20]).unwrap();
    wharf
}

fn hostile(wharf: &Wharf, args: &[&str]) -> std::process::Output {
    let port = wharf.sftp_port().to_string();
    let mut all = vec![port.as_str(), "alice", "alice-pw"];
    all.extend_from_slice(args);
    wharf_test_support::wharf::python(&py("hostile.py"), &all)
}

/// A new session of alice works (her only slot is free again).
fn can_log_in(wharf: &Wharf) -> bool {
    let port = wharf.sftp_port().to_string();
    let out = wharf_test_support::wharf::python(
        &py("ops.py"),
        &[&port, "alice", "alice-pw", "stat:/big.bin:ok"],
    );
    out.status.success()
}

#[test]
fn a_client_that_vanishes_with_replies_pending_frees_everything() {
    let wharf = one_session_each();
    let pid = wharf.pid();
    assert!(can_log_in(&wharf));
    let (rss_before, fds_before) = (rss_kib(pid), fds(pid));
    let mut report = vec![format!(
        "before: RSS {} MiB, {fds_before} descriptors",
        rss_before / 1024
    )];
    for round in 1..=3usize {
        // 10 channels x 300 reads of 255 KiB: 750 MiB asked for, never read.
        let out = hostile(&wharf, &["stuck-reads", "/big.bin", "10", "300"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let peak = rss_kib(pid);
        assert!(
            peak < rss_before + 200 * 1024,
            "round {round}: RSS {peak} KiB, beyond max_memory_per_user"
        );
        let freed = within(
            Duration::from_secs(10),
            || "DISCONNECTED".to_owned(),
            || wharf.activities("DISCONNECTED").len() >= 2 * round,
        );
        within(
            Duration::from_secs(10),
            || "descriptors back".to_owned(),
            || fds(pid) <= fds_before,
        );
        // Every open file was closed as PARTIAL_CLOSE, the slot is free.
        assert!(wharf.activities("PARTIAL_CLOSE").len() >= 10 * round);
        assert!(
            can_log_in(&wharf),
            "alice is locked out after round {round}"
        );
        report.push(format!(
            "round {round}: peak RSS {} MiB, after {} MiB, {} descriptors, session ended {freed:?} after the client left",
            peak / 1024,
            rss_kib(pid) / 1024,
            fds(pid)
        ));
    }
    // The peak is bounded by max_memory_per_user (128 MiB) and, once the
    // burst is over, freed memory goes back to the system.
    within(
        Duration::from_secs(10),
        || "RSS back near the start".to_owned(),
        || rss_kib(pid) < rss_before + 32 * 1024,
    );
    report.push(format!("settled: RSS {} MiB", rss_kib(pid) / 1024));
    eprintln!("{}", report.join("\n"));
}

#[test]
fn an_abandoned_paramiko_get_frees_the_session() {
    let wharf = one_session_each();
    let out = hostile(&wharf, &["abandoned-get", "/big.bin", "8000000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    within(
        Duration::from_secs(10),
        || "DISCONNECTED".to_owned(),
        || !wharf.activities("DISCONNECTED").is_empty(),
    );
    assert_eq!(wharf.activities("PARTIAL_CLOSE").len(), 1);
    assert!(can_log_in(&wharf));
}

#[test]
fn open_files_are_capped_per_user_with_a_clear_error() {
    let wharf = prepare("");
    wharf.add_server_keys("max_handles_per_user = 8");
    for user in ["alice", "bob"] {
        wharf.add_user(
            user,
            Some(&format!("{user}-pw")),
            &["--home-directory-mapping", &format!("/=/default/{user}")],
        );
    }
    let wharf = wharf.start();
    for user in ["alice", "bob"] {
        std::fs::create_dir_all(wharf.path(&format!("files/{user}"))).unwrap();
        std::fs::write(wharf.path(&format!("files/{user}/f")), b"x").unwrap();
    }
    // alice's two sessions together get 8, then a clear refusal.
    let out = hostile(&wharf, &["many-handles", "/f", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("opened 8\n"), "{text}");
    assert!(text.contains("refused: Too many open files"), "{text}");
    assert!(text.contains("reopened"), "{text}");
    // bob is not affected by alice's handles.
    let port = wharf.sftp_port().to_string();
    let out =
        wharf_test_support::wharf::python(&py("ops.py"), &[&port, "bob", "bob-pw", "get:/f:ok"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let error = wharf.wait_for_log("the refusal", |l| {
        l["activity-type"] == "ERROR"
            && l["message"]
                .as_str()
                .is_some_and(|m| m.contains("max_handles_per_user"))
    });
    assert_eq!(error["user"], "alice");
}
