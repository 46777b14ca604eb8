//! Identity providers and SSH authentication end to end: a Lambda-style
//! handler behind the example runner, key logins with the OpenSSH client,
//! PUBLIC_KEY_AND_PASSWORD, and the security policy.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use crate::*;

/// The example runner serving `table_handler.py` on the lambda contract.
struct Runner {
    child: Child,
    port: u16,
}

impl Runner {
    fn start(users_file: &Path) -> Runner {
        let runner = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/identity-providers/runner.py");
        let mut child = Command::new("python3")
            .arg(runner)
            .args(["--port", "0", "--handler"])
            .arg(format!(
                "{}:lambda_handler",
                py("table_handler.py").display()
            ))
            .env("WHARF_TEST_USERS", users_file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("runner said {line:?}"));
        Runner { child, port }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_lambda_handler_answers_password_and_key_logins_from_openssh() {
    let (key, public) = ssh_key("client_alice");
    let (other_key, _) = ssh_key("client_mallory");
    let wharf = prepare("");
    let users = wharf.path("users.json");
    std::fs::write(
        &users,
        serde_json::json!({
            "alice": {
                "password": "lambda-pw",
                "keys": [public],
                "response": {
                    "HomeDirectoryType": "LOGICAL",
                    "HomeDirectoryDetails": "[{\"Entry\": \"/\", \"Target\": \"/default/alice\"}]",
                    "SessionTags": {"team": "blue"}
                }
            },
            // A key the provider restricts with authorized_keys options.
            "carol": {
                "password": "unused-pw",
                "keys": [format!("from=\"127.0.0.2\",restrict {public}")],
                "response": {
                    "HomeDirectoryType": "LOGICAL",
                    "HomeDirectoryDetails": "[{\"Entry\": \"/\", \"Target\": \"/default/carol\"}]"
                }
            }
        })
        .to_string(),
    )
    .unwrap();
    let runner = Runner::start(&users);
    let config = std::fs::read_to_string(wharf.config_path()).unwrap();
    std::fs::write(
        wharf.config_path(),
        format!(
            "{config}\n[identity_provider]\ntype = \"lambda\"\nurl = \"http://127.0.0.1:{}/2015-03-31/functions/function/invocations\"\ntimeout = \"5s\"\n",
            runner.port
        ),
    )
    .unwrap();
    let wharf = wharf.start();
    let dir = wharf.dir.path();
    std::fs::write(dir.join("f.txt"), b"via lambda").unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("lambda-pw".into()),
        "put f.txt\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(wharf.path("files/alice/f.txt")).unwrap(),
        b"via lambda"
    );
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Key(key),
        "get f.txt back.txt\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let connected = wharf.wait_for_log("key login", |l| {
        l["activity-type"] == "CONNECTED" && l["method"] == "publickey"
    });
    assert!(
        connected["ssh-public-key-fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    assert!(
        !sftp_batch(
            wharf.sftp_port(),
            "alice",
            &Login::Key(other_key),
            "ls\n",
            dir,
            &[]
        )
        .status
        .success()
    );
    assert!(
        !sftp_batch(
            wharf.sftp_port(),
            "alice",
            &Login::Password("wrong".into()),
            "ls\n",
            dir,
            &[]
        )
        .status
        .success()
    );
    // The provider's from= option is enforced: carol's key works from
    // 127.0.0.2 only.
    let carol = |bind: &str| {
        sftp_batch(
            wharf.sftp_port(),
            "carol",
            &Login::Key(ssh_key("client_alice").0),
            "ls\n",
            dir,
            &["-o", &format!("BindAddress={bind}")],
        )
        .status
        .success()
    };
    assert!(carol("127.0.0.2"));
    assert!(!carol("127.0.0.1"));
    wharf.wait_for_auth_failure("carol", "from= list does not include 127.0.0.1");
    let denied = wharf.wait_for_log("lambda denial", |l| {
        l["activity-type"] == "AUTH_FAILURE" && l["method"] == "password"
    });
    assert!(
        denied["reason"].as_str().unwrap().contains("denied"),
        "{denied}"
    );
    // test-idp against the same handler, for both kinds of login.
    let ok = wharf.cli(
        &["test-idp", "--user", "alice", "--password-stdin"],
        Some("lambda-pw\n"),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    let key_file = format!("{}.pub", ssh_key("client_alice").0.display());
    let by_key = wharf.cli(
        &["test-idp", "--user", "alice", "--public-key", &key_file],
        None,
    );
    assert_eq!(by_key.status.code(), Some(0), "{}", stdout(&by_key));
    let answer: serde_json::Value = serde_json::from_slice(&by_key.stdout).unwrap();
    assert_eq!(answer["Session"]["SessionTags"]["team"], "blue");
    // The provider going away denies promptly.
    drop(runner);
    assert!(
        !sftp_batch(
            wharf.sftp_port(),
            "alice",
            &Login::Password("lambda-pw".into()),
            "ls\n",
            dir,
            &[]
        )
        .status
        .success()
    );
}

/// SPEC section 3: unknown fields of a provider's answer are ignored and
/// logged by name, never by value, as a warning on stderr, once per answer;
/// `wharf test-idp` shows the warning too.
#[test]
fn unknown_response_fields_are_named_on_stderr_never_shown() {
    let wharf = prepare("");
    let users = wharf.path("users.json");
    std::fs::write(
        &users,
        serde_json::json!({
            "alice": {
                "password": "lambda-pw",
                "response": {
                    "HomeDirectory": "/default/alice",
                    "Foo": "secret-value"
                }
            }
        })
        .to_string(),
    )
    .unwrap();
    let runner = Runner::start(&users);
    let config = std::fs::read_to_string(wharf.config_path()).unwrap();
    std::fs::write(
        wharf.config_path(),
        format!(
            "{config}\n[identity_provider]\ntype = \"lambda\"\nurl = \"http://127.0.0.1:{}/2015-03-31/functions/function/invocations\"\n",
            runner.port
        ),
    )
    .unwrap();
    let wharf = wharf.start();
    let dir = wharf.dir.path();
    std::fs::write(dir.join("f.txt"), b"unknown fields").unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("lambda-pw".into()),
        "put f.txt\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(wharf.path("files/alice/f.txt")).unwrap(),
        b"unknown fields"
    );
    // The login logged the warning (the reader of wharf's stderr may be a
    // little behind: wait for it, with a deadline).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let warnings = loop {
        let warnings: Vec<String> = wharf
            .stderr_lines()
            .into_iter()
            .filter(|l| l.contains("\"Foo\""))
            .collect();
        if !warnings.is_empty() {
            break warnings;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no warning naming Foo: {:#?}",
            wharf.stderr_lines()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("WARN"), "{warnings:#?}");
    let all = wharf.stderr_lines().join("\n");
    assert!(!all.contains("secret-value"), "{all}");
    assert!(
        !std::fs::read_to_string(wharf.path("audit.log"))
            .unwrap()
            .contains("secret-value")
    );
    // test-idp: the same warning on stderr; the answer itself on stdout.
    let out = wharf.cli(
        &["test-idp", "--user", "alice", "--password-stdin"],
        Some("lambda-pw\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("\"Foo\""), "{err}");
    assert!(!err.contains("secret-value"), "{err}");
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer["Session"]["UnknownFields"],
        serde_json::json!(["Foo"])
    );
}

fn with_methods(methods: &str) -> Wharf {
    let (_, public) = ssh_key("client_alice");
    let wharf = prepare(&format!(
        "[identity_provider]\nsftp_authentication_methods = \"{methods}\"\n"
    ));
    wharf.add_user("alice", Some("alice-pw"), &["--ssh-key", &public]);
    wharf.start()
}

#[test]
fn sftp_authentication_methods_are_enforced() {
    let (key, _) = ssh_key("client_alice");
    let password = || Login::Password("alice-pw".into());
    let both = || Login::KeyAndPassword(key.clone(), "alice-pw".into());
    let ok = |wharf: &Wharf, login: Login| {
        sftp_batch(
            wharf.sftp_port(),
            "alice",
            &login,
            "ls\n",
            wharf.dir.path(),
            &[],
        )
        .status
        .success()
    };

    let wharf = with_methods("PASSWORD");
    assert!(ok(&wharf, password()));
    assert!(!ok(&wharf, Login::Key(key.clone())));

    let wharf = with_methods("PUBLIC_KEY");
    assert!(!ok(&wharf, password()));
    assert!(ok(&wharf, Login::Key(key.clone())));

    let wharf = with_methods("PUBLIC_KEY_AND_PASSWORD");
    assert!(!ok(&wharf, password()));
    assert!(!ok(&wharf, Login::Key(key.clone())));
    assert!(ok(&wharf, both()));
    let connected = wharf.wait_for_log("two-step login", |l| l["activity-type"] == "CONNECTED");
    assert_eq!(connected["method"], "password");
}

/// Runs `ls` with extra OpenSSH options; true when it worked.
fn ls_with(wharf: &Wharf, options: &[&str]) -> bool {
    let login = Login::Password("alice-pw".into());
    let mut extra = vec![];
    for option in options {
        extra.push("-o");
        extra.push(option);
    }
    sftp_batch(
        wharf.sftp_port(),
        "alice",
        &login,
        "ls\n",
        wharf.dir.path(),
        &extra,
    )
    .status
    .success()
}

#[test]
fn the_default_security_policy_refuses_weak_algorithms() {
    let wharf = with_methods("PUBLIC_KEY_OR_PASSWORD");
    for (options, what) in [
        (&["Ciphers=aes128-cbc"][..], "CBC cipher"),
        (&["Ciphers=3des-cbc"], "3DES"),
        (&["Ciphers=aes128-ctr", "MACs=hmac-sha1"], "SHA-1 MAC"),
        (
            &["KexAlgorithms=diffie-hellman-group14-sha1"],
            "SHA-1 key exchange",
        ),
        (&["KexAlgorithms=diffie-hellman-group1-sha1"], "group1"),
        (&["KexAlgorithms=ecdh-sha2-nistp256"], "NIST curve"),
        (&["HostKeyAlgorithms=ssh-rsa"], "SHA-1 RSA host key"),
    ] {
        assert!(!ls_with(&wharf, options), "{what} was accepted");
    }
    for options in [
        &["Ciphers=aes128-gcm@openssh.com"][..],
        &["Ciphers=aes256-gcm@openssh.com"],
        &["Ciphers=chacha20-poly1305@openssh.com"],
        &["Ciphers=aes256-ctr", "MACs=hmac-sha2-256-etm@openssh.com"],
        // libssh2 1.10 (curl, PHP) knows no encrypt-then-MAC.
        &["Ciphers=aes128-ctr", "MACs=hmac-sha2-256"],
        &["Ciphers=aes256-ctr", "MACs=hmac-sha2-512"],
        // Post-quantum key exchange for OpenSSH 8.5-9.8.
        &["KexAlgorithms=sntrup761x25519-sha512@openssh.com"],
        &["KexAlgorithms=curve25519-sha256"],
    ] {
        assert!(ls_with(&wharf, options), "{options:?} was refused");
    }
    // The log names what was negotiated.
    let kexes: Vec<String> = wharf
        .activities("CONNECTED")
        .iter()
        .map(|l| l["kex"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        kexes.contains(&"sntrup761x25519-sha512@openssh.com".to_owned()),
        "{kexes:?}"
    );
    assert!(kexes.contains(&"curve25519-sha256".to_owned()), "{kexes:?}");
}

/// A server with the given security policy and the host keys wharf
/// generates by default (ed25519 and RSA-3072), with alice.
fn with_policy(policy: &str) -> Wharf {
    let (_, public) = ssh_key("client_alice");
    let wharf = prepare("");
    let config = std::fs::read_to_string(wharf.config_path())
        .unwrap()
        .replace(
            &format!(
                "host_keys = [\"{}\"]\n",
                wharf_test_support::wharf::host_key().display()
            ),
            &format!("security_policy = \"{policy}\"\n"),
        );
    std::fs::write(wharf.config_path(), config).unwrap();
    wharf.add_user("alice", Some("alice-pw"), &["--ssh-key", &public]);
    wharf.start()
}

/// `ssh-audit` (pinned in the test virtualenv) against the server: its exit
/// status (0 good, 2 warnings, 3 failures) and its report.
fn ssh_audit(wharf: &Wharf) -> (i32, String) {
    let tool = wharf_test_support::tools::venv_python().with_file_name("ssh-audit");
    let out = std::process::Command::new(tool)
        .args(["-n", "--skip-rate-test", "-t", "30", "-p"])
        .arg(wharf.sftp_port().to_string())
        .arg("127.0.0.1")
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), stdout(&out))
}

#[test]
fn ssh_audit_passes_each_security_policy() {
    // The default: no failure (its warnings are the classical key
    // exchanges and encrypt-and-MAC, which libssh2 1.10 and paramiko need).
    let wharf = with_policy("wharf-2025-11");
    let (status, report) = ssh_audit(&wharf);
    assert!(!report.contains("[fail]"), "{report}");
    assert_eq!(status, 2, "{report}");
    assert!(report.contains("(kex) mlkem768x25519-sha256"), "{report}");
    assert!(
        report.contains("(kex) sntrup761x25519-sha512@openssh.com"),
        "{report}"
    );
    assert!(report.contains("kex-strict-s-v00@openssh.com"), "{report}");
    assert!(report.contains("(key) rsa-sha2-512"), "{report}");
    // Restricted: no failure and no warning.
    let wharf = with_policy("wharf-restricted-2025-11");
    let (status, report) = ssh_audit(&wharf);
    assert!(
        !report.contains("[fail]") && !report.contains("[warn]"),
        "{report}"
    );
    assert_eq!(status, 0, "{report}");
}

#[test]
fn the_restricted_security_policy_refuses_classical_kex_and_encrypt_and_mac() {
    let wharf = with_policy("wharf-restricted-2025-11");
    for refused in [
        &["Ciphers=aes128-ctr", "MACs=hmac-sha2-256"][..],
        &["KexAlgorithms=curve25519-sha256"],
        &["KexAlgorithms=diffie-hellman-group16-sha512"],
    ] {
        assert!(!ls_with(&wharf, refused), "{refused:?} was accepted");
    }
    for accepted in [
        &["Ciphers=aes128-ctr", "MACs=hmac-sha2-256-etm@openssh.com"][..],
        &["KexAlgorithms=sntrup761x25519-sha512@openssh.com"],
        &[],
    ] {
        assert!(ls_with(&wharf, accepted), "{accepted:?} was refused");
    }
}
