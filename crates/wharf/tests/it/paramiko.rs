//! paramiko for the operations the OpenSSH client does not reach.

use crate::*;

fn run(wharf: &Wharf, checks: &[&str]) {
    let port = wharf.sftp_port().to_string();
    let mut args = vec![port.as_str(), "alice", "alice-pw"];
    args.extend_from_slice(checks);
    let out = wharf_test_support::wharf::python(&py("sftp_checks.py"), &args);
    assert!(
        out.status.success(),
        "paramiko checks failed:\n{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    for check in checks {
        assert!(
            stdout(&out).contains(&format!("ok {check}\n")),
            "{check} did not run: {}",
            stdout(&out)
        );
    }
}

#[test]
fn files_attributes_renames_and_errors() {
    let wharf = with_alice("");
    run(&wharf, &["files", "attributes", "renames", "errors"]);
    wharf.wait_for_log("SETSTAT", |l| l["activity-type"] == "SETSTAT");
}

#[test]
fn concurrent_requests_on_one_session() {
    let wharf = with_alice("");
    run(&wharf, &["concurrency", "flood"]);
}

#[test]
fn malformed_packets_close_only_their_channel() {
    let wharf = with_alice("");
    run(&wharf, &["malformed"]);
    let error = wharf.wait_for_log("protocol ERROR", |l| {
        l["activity-type"] == "ERROR" && l["message"] == "protocol violation"
    });
    assert!(
        error["reason"]
            .as_str()
            .unwrap()
            .starts_with("SFTP protocol error, channel closed:"),
        "{error}"
    );
}

#[test]
fn max_sessions_per_user() {
    let wharf = prepare("");
    wharf.add_server_keys("max_sessions_per_user = 1");
    wharf.add_user("alice", Some("alice-pw"), &[]);
    let wharf = wharf.start();
    run(&wharf, &["session_limit"]);
    wharf.wait_for_log("session limit", |l| {
        l["activity-type"] == "AUTH_FAILURE"
            && l["reason"]
                .as_str()
                .unwrap_or("")
                .contains("max_sessions_per_user")
    });
}

#[test]
fn idle_sessions_are_closed() {
    let wharf = prepare("");
    wharf.add_server_keys("idle_timeout = \"2s\"");
    wharf.add_user("alice", Some("alice-pw"), &[]);
    let wharf = wharf.start();
    run(&wharf, &["idle_timeout"]);
}
