//! OpenSSH `sftp` and `scp` against wharf.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::*;

fn random_file(path: &Path, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ len as u64;
    for byte in data.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    std::fs::write(path, &data).unwrap();
    data
}

/// alice: LOGICAL `/` -> /default/alice, password "alice-pw".
fn with_alice(extra: &str) -> Wharf {
    let wharf = prepare(extra);
    let (_, public) = ssh_key("client_alice");
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &[
            "--home-directory-mapping",
            "/=/default/alice",
            "--ssh-key",
            &public,
        ],
    );
    wharf.start()
}

#[track_caller]
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "failed:\nstdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn password_login_and_every_basic_operation() {
    let wharf = with_alice("");
    let dir = wharf.dir.path();
    let data = random_file(&dir.join("up.bin"), 3_000_000);
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("alice-pw".into()),
        "put up.bin\nmkdir sub\nput up.bin sub/copy.bin\nls -l sub\nrename sub/copy.bin sub/moved.bin\nget sub/moved.bin down.bin\nrm sub/moved.bin\nrmdir sub\npwd\nls\n",
        dir,
        &[],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Remote working directory: /"), "{text}");
    assert!(text.contains("copy.bin"), "{text}");
    assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);
    assert_eq!(
        std::fs::read(wharf.path("files/alice/up.bin")).unwrap(),
        data
    );
    assert!(!wharf.path("files/alice/sub").exists());
    for activity in [
        "CONNECTED",
        "OPEN",
        "CLOSE",
        "MKDIR",
        "RENAME",
        "DELETE",
        "RMDIR",
    ] {
        wharf.wait_for_log(activity, |l| l["activity-type"] == activity);
    }
    let close = wharf.wait_for_log("CLOSE of the upload", |l| {
        l["activity-type"] == "CLOSE" && l["path"] == "/default/alice/up.bin"
    });
    assert_eq!(close["bytes-in"], 3_000_000);
    assert_eq!(close["user"], "alice");
    assert!(close["duration-ms"].is_u64());
    let connected = &wharf.activities("CONNECTED")[0];
    assert_eq!(connected["method"], "password");
    assert!(connected["client"].as_str().unwrap().contains("OpenSSH"));
    assert!(connected["kex"].as_str().unwrap().len() > 5);
    assert!(connected["ciphers"].as_str().unwrap().contains(','));
    let disconnected = wharf.wait_for_log("DISCONNECTED", |l| l["activity-type"] == "DISCONNECTED");
    // One session, one CONNECTED and one DISCONNECTED, with the same fields
    // (the client and the negotiated algorithms included), and nothing of
    // that session logged after it.
    assert_eq!(wharf.activities("CONNECTED").len(), 1);
    assert_eq!(wharf.activities("DISCONNECTED").len(), 1);
    for field in ["session-id", "user", "client", "kex", "ciphers", "method"] {
        assert_eq!(disconnected[field], connected[field], "{field}");
    }
    let log = wharf.log();
    let last = log
        .iter()
        .rposition(|l| l["session-id"] == connected["session-id"])
        .unwrap();
    assert_eq!(log[last]["activity-type"], "DISCONNECTED");
    let log = std::fs::read_to_string(wharf.path("audit.log")).unwrap();
    assert!(!log.contains("alice-pw"), "a password reached the log");
}

#[test]
fn key_login_and_wrong_credentials() {
    let wharf = with_alice("");
    let dir = wharf.dir.path();
    let (key, _) = ssh_key("client_alice");
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Key(key),
        "ls\n",
        dir,
        &[],
    );
    assert_ok(&out);
    let connected = wharf.wait_for_log("key CONNECTED", |l| l["activity-type"] == "CONNECTED");
    assert_eq!(connected["method"], "publickey");
    assert!(
        connected["ssh-public-key-fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );

    let wrong = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("nope".into()),
        "ls\n",
        dir,
        &[],
    );
    assert!(!wrong.status.success());
    let failure = wharf.wait_for_log("AUTH_FAILURE", |l| {
        l["activity-type"] == "AUTH_FAILURE" && l["reason"] == "wrong password"
    });
    assert_eq!(failure["user"], "alice");
    let (other_key, _) = ssh_key("client_mallory");
    let wrong_key = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Key(other_key),
        "ls\n",
        dir,
        &[],
    );
    assert!(!wrong_key.status.success());
    wharf.wait_for_log("key AUTH_FAILURE", |l| {
        l["activity-type"] == "AUTH_FAILURE"
            && l["reason"]
                .as_str()
                .unwrap_or("")
                .contains("is not one of the user's PublicKeys")
    });
    let nobody = sftp_batch(
        wharf.sftp_port(),
        "nobody",
        &Login::Password("x".into()),
        "ls\n",
        dir,
        &[],
    );
    assert!(!nobody.status.success());
    let bad_name = sftp_batch(
        wharf.sftp_port(),
        "../../root",
        &Login::Password("x".into()),
        "ls\n",
        dir,
        &[],
    );
    assert!(!bad_name.status.success());
    wharf.wait_for_log("username refused", |l| {
        l["activity-type"] == "AUTH_FAILURE"
            && l["reason"]
                .as_str()
                .unwrap_or("")
                .contains("username may contain only")
    });
    let log = std::fs::read_to_string(wharf.path("audit.log")).unwrap();
    assert!(!log.contains("nope") && !log.contains("alice-pw"));
}

#[test]
fn scp_uploads_and_downloads() {
    let wharf = with_alice("");
    let dir = wharf.dir.path();
    let data = random_file(&dir.join("scp.bin"), 1_000_000);
    let login = Login::Password("alice-pw".into());
    assert_ok(&scp(
        wharf.sftp_port(),
        &login,
        &["scp.bin", "alice@127.0.0.1:/remote.bin"],
        dir,
    ));
    assert_eq!(
        std::fs::read(wharf.path("files/alice/remote.bin")).unwrap(),
        data
    );
    assert_ok(&scp(
        wharf.sftp_port(),
        &login,
        &["alice@127.0.0.1:/remote.bin", "back.bin"],
        dir,
    ));
    assert_eq!(std::fs::read(dir.join("back.bin")).unwrap(), data);
    // Legacy scp (exec "scp -t") is not offered.
    let legacy = scp(
        wharf.sftp_port(),
        &login,
        &["-O", "scp.bin", "alice@127.0.0.1:/legacy.bin"],
        dir,
    );
    assert!(!legacy.status.success());
    assert!(!wharf.path("files/alice/legacy.bin").exists());
}

#[test]
fn hostile_paths_stay_inside_the_home() {
    let wharf = with_alice("");
    let dir = wharf.dir.path();
    std::fs::create_dir_all(wharf.path("files/bob")).unwrap();
    std::fs::write(wharf.path("files/bob/secret.txt"), b"bob's").unwrap();
    std::fs::create_dir_all(wharf.path("files/alice")).unwrap();
    std::os::unix::fs::symlink("../bob/secret.txt", wharf.path("files/alice/link")).unwrap();
    std::os::unix::fs::symlink("/etc", wharf.path("files/alice/etc")).unwrap();
    let login = Login::Password("alice-pw".into());
    for (batch, what) in [
        ("get ../bob/secret.txt a\n", "parent"),
        ("get ../../../../etc/passwd b\n", "etc"),
        ("get link c\n", "symlink to bob"),
        ("get etc/passwd d\n", "symlink to /etc"),
        ("cd ../../..\nget bob/secret.txt e\n", "cd up"),
    ] {
        let out = sftp_batch(wharf.sftp_port(), "alice", &login, batch, dir, &[]);
        assert!(!out.status.success(), "{what} succeeded: {}", stdout(&out));
    }
    for file in ["a", "b", "c", "d", "e"] {
        assert!(!dir.join(file).exists(), "{file} was downloaded");
    }
    // `cd ..` at the root stays at the root.
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &login,
        "cd ../../..\npwd\n",
        dir,
        &[],
    );
    assert_ok(&out);
    assert!(
        stdout(&out).contains("Remote working directory: /\n"),
        "{}",
        stdout(&out)
    );
    // Over-long names get a clear error, and the session goes on.
    let long = "x".repeat(300);
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &login,
        &format!("-mkdir {long}\nmkdir ok\n"),
        dir,
        &[],
    );
    assert_ok(&out);
    assert!(wharf.path("files/alice/ok").is_dir());
}

#[test]
fn path_homes_with_the_default_role_cannot_leave_home() {
    let wharf = prepare("");
    wharf.add_user(
        "bob",
        Some("bob-pw"),
        &["--home-directory", "/default/users/bob"],
    );
    let wharf = wharf.start();
    std::fs::create_dir_all(wharf.path("files/users/carol")).unwrap();
    std::fs::write(wharf.path("files/users/carol/c.txt"), b"carol").unwrap();
    let dir = wharf.dir.path();
    let login = Login::Password("bob-pw".into());
    std::fs::write(dir.join("mine.txt"), b"mine").unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "bob",
        &login,
        "pwd\nput mine.txt\nls\n",
        dir,
        &[],
    );
    assert_ok(&out);
    assert!(
        stdout(&out).contains("Remote working directory: /default/users/bob"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        std::fs::read(wharf.path("files/users/bob/mine.txt")).unwrap(),
        b"mine"
    );
    let out = sftp_batch(
        wharf.sftp_port(),
        "bob",
        &login,
        "get /default/users/carol/c.txt\n",
        dir,
        &[],
    );
    assert!(!out.status.success());
    // The client stats the file first: that listing is what is denied.
    let denied = wharf.wait_for_log("ACCESS_DENIED", |l| {
        l["activity-type"] == "ACCESS_DENIED" && l["path"] == "/default/users/carol/c.txt"
    });
    assert_eq!(
        denied["message"],
        "s3:ListBucket on arn:aws:s3:::default with s3:prefix \"users/carol/c.txt\""
    );
    assert!(denied["reason"].as_str().unwrap().contains("implicit deny"));
    // Above the home: traversable, listed with the way home only.
    let out = sftp_batch(
        wharf.sftp_port(),
        "bob",
        &login,
        "cd /default\nls -1 /default/users\ncd /default/users/bob\n",
        dir,
        &[],
    );
    assert_ok(&out);
    let listed = stdout(&out);
    assert!(listed.contains("bob"), "{listed}");
    assert!(!listed.contains("carol"), "{listed}");
}

#[test]
fn user_changes_take_effect_without_a_restart() {
    let wharf = with_alice("");
    let dir = wharf.dir.path();
    let login = Login::Password("dave-pw".into());
    assert!(
        !sftp_batch(wharf.sftp_port(), "dave", &login, "ls\n", dir, &[])
            .status
            .success()
    );
    wharf.add_user(
        "dave",
        Some("dave-pw"),
        &["--home-directory-mapping", "/=/default/dave"],
    );
    assert_ok(&sftp_batch(
        wharf.sftp_port(),
        "dave",
        &login,
        "ls\n",
        dir,
        &[],
    ));
    let out = wharf.cli(
        &["user", "set-password", "dave", "--password-stdin"],
        Some("new-pw\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !sftp_batch(wharf.sftp_port(), "dave", &login, "ls\n", dir, &[])
            .status
            .success()
    );
    assert_ok(&sftp_batch(
        wharf.sftp_port(),
        "dave",
        &Login::Password("new-pw".into()),
        "ls\n",
        dir,
        &[],
    ));
    assert!(
        wharf
            .cli(&["user", "remove", "dave"], None)
            .status
            .success()
    );
    assert!(
        !sftp_batch(
            wharf.sftp_port(),
            "dave",
            &Login::Password("new-pw".into()),
            "ls\n",
            dir,
            &[]
        )
        .status
        .success()
    );
}

#[test]
fn garbage_on_the_socket_does_not_stop_the_server() {
    let wharf = with_alice("");
    let port = wharf.sftp_port();
    let mut handles = Vec::new();
    for junk in [
        b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        vec![0xffu8; 70_000],
        b"SSH-2.0-evil\r\n\x00\x00\xff\xff\x14garbage".to_vec(),
        b"SSH-2.0-evil\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(0u8, 40_000))
            .collect(),
    ] {
        handles.push(std::thread::spawn(move || {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.write_all(&junk);
            let mut sink = [0u8; 4096];
            // The server answers with its banner then closes; reading to EOF
            // proves it closed the connection rather than hanging.
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }));
    }
    for handle in handles {
        handle.join().unwrap();
    }
    let out = sftp_batch(
        port,
        "alice",
        &Login::Password("alice-pw".into()),
        "ls\n",
        wharf.dir.path(),
        &[],
    );
    assert_ok(&out);
}

#[test]
fn banner_and_graceful_stop() {
    let wharf = prepare("");
    wharf.add_server_keys("banner = \"Authorised users only\"");
    wharf.add_user("alice", Some("alice-pw"), &[]);
    let wharf = wharf.start();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("alice-pw".into()),
        "ls\n",
        wharf.dir.path(),
        &[],
    );
    assert_ok(&out);
    assert!(
        stderr(&out).contains("Authorised users only"),
        "{}",
        stderr(&out)
    );
    let status = wharf.stop();
    assert!(status.success(), "{status:?}");
}

/// A LOGICAL home with a FILE entry on a filesystem store: the file is
/// listed and can be read (it was hidden and unreadable).
#[test]
fn a_file_mapping_on_a_filesystem_store_is_listed_and_readable() {
    let wharf = prepare("");
    let answer = wharf.path("answer.sh");
    std::fs::write(
        &answer,
        r#"cat > /dev/null
printf '%s' '{"HomeDirectoryType": "LOGICAL", "HomeDirectoryDetails": "[{\"Entry\": \"/\", \"Target\": \"/default/alice\"}, {\"Entry\": \"/readme.txt\", \"Target\": \"/default/docs/readme.txt\", \"Type\": \"FILE\"}]"}'
"#,
    )
    .unwrap();
    let config = std::fs::read_to_string(wharf.config_path()).unwrap();
    std::fs::write(
        wharf.config_path(),
        format!(
            "{config}\n[identity_provider]\ntype = \"command\"\ncommand = [\"/bin/sh\", \"{}\"]\n",
            answer.display()
        ),
    )
    .unwrap();
    let wharf = wharf.start();
    std::fs::create_dir_all(wharf.path("files/docs")).unwrap();
    std::fs::create_dir_all(wharf.path("files/alice")).unwrap();
    std::fs::write(wharf.path("files/docs/readme.txt"), b"read me").unwrap();
    let dir = wharf.dir.path();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("any".into()),
        "ls -1\nget readme.txt back.txt\n",
        dir,
        &[],
    );
    assert_ok(&out);
    assert!(stdout(&out).contains("readme.txt"), "{}", stdout(&out));
    assert_eq!(std::fs::read(dir.join("back.txt")).unwrap(), b"read me");
}

#[test]
fn authorized_keys_options_restrict_key_logins() {
    let wharf = prepare("");
    let (key, public) = ssh_key("client_alice");
    let keys = wharf.path("carol_keys");
    std::fs::write(
        &keys,
        format!("# carol's partner host only\nfrom=\"127.0.0.2,10.0.0.0/8\",restrict {public}\n"),
    )
    .unwrap();
    let keys_arg = format!("@{}", keys.display());
    wharf.add_user(
        "carol",
        None,
        &[
            "--home-directory-mapping",
            "/=/default/carol",
            "--ssh-key",
            &keys_arg,
        ],
    );
    let expired = format!("expiry-time=\"20000101\" {public}");
    wharf.add_user(
        "dave",
        None,
        &[
            "--home-directory-mapping",
            "/=/default/dave",
            "--ssh-key",
            &expired,
        ],
    );
    // An option wharf does not implement is refused by name, not dropped.
    let refused = wharf.cli(
        &[
            "user",
            "add",
            "erin",
            "--ssh-key",
            &format!("environment=\"PATH=/tmp\" {public}"),
        ],
        None,
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("\"environment\""),
        "{}",
        stderr(&refused)
    );
    assert!(!stdout(&wharf.cli(&["user", "list"], None)).contains("erin"));
    // The restriction is stored with the key and shown.
    let shown = stdout(&wharf.cli(&["user", "show", "carol"], None));
    assert!(
        shown.contains(r#"from=\"127.0.0.2,10.0.0.0/8\",restrict ssh-ed25519"#),
        "{shown}"
    );

    let wharf = wharf.start();
    let dir = wharf.dir.path();
    let login = |user: &str, bind: &str| {
        sftp_batch(
            wharf.sftp_port(),
            user,
            &Login::Key(key.clone()),
            "ls\n",
            dir,
            &["-o", &format!("BindAddress={bind}")],
        )
    };
    assert_ok(&login("carol", "127.0.0.2"));
    assert!(!login("carol", "127.0.0.1").status.success());
    wharf.wait_for_auth_failure("carol", "from= list does not include 127.0.0.1");
    assert!(!login("dave", "127.0.0.1").status.success());
    wharf.wait_for_auth_failure("dave", "expired at 2000-01-01T00:00:00Z");
}
