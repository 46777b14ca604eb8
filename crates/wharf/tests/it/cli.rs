//! The command line: check-config, user management, test-idp, policy
//! simulate, exit codes.

use std::process::{Command, Stdio};

use crate::*;

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn check_config_on_the_embedded_default_and_on_a_broken_file() {
    let empty = tempfile::tempdir().unwrap();
    let out = run_in(empty.path(), &["check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("the embedded default: configuration is valid"));
    // A check writes nothing: no data_dir, keys, certificate or user database.
    let written: Vec<_> = std::fs::read_dir(empty.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(written.is_empty(), "check-config wrote {written:?}");

    let wharf = Wharf::prepare(
        binary(),
        r#"
[server]
bogus_key = 1
idle_timeout = "forever"
[protocols.sftp]
listen = "127.0.0.1:0"
[storage.reports]
kind = "s3"
endpoint = 5
[roles.readers]
policies = ["missing.json"]
[identity_provider]
type = "lambda"
"#,
    );
    // --config before and after the subcommand.
    for args in [
        vec![
            "--config",
            wharf.config_path().to_str().unwrap(),
            "check-config",
        ],
        vec![
            "check-config",
            "--config",
            wharf.config_path().to_str().unwrap(),
        ],
    ] {
        let out = run_in(wharf.dir.path(), &args);
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        for expected in [
            "server.bogus_key: unknown key",
            "server.idle_timeout: \"forever\" is not a duration",
            "storage.reports.endpoint: expected a string, got an integer",
            "identity_provider.url: required",
        ] {
            assert!(err.contains(expected), "{expected:?} missing from {err}");
        }
    }
    // A file that parses but has a bad policy file: named by its key path.
    let wharf = Wharf::prepare(
        binary(),
        "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n[roles.readers]\npolicies = [\"p.json\"]\n",
    );
    std::fs::write(wharf.path("p.json"), r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Maybe", "Action": "s3:*", "Resource": "*"}]}"#).unwrap();
    let out = wharf.cli(&["check-config"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("roles.readers.policies[0]"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Effect"), "{}", stderr(&out));
    // Environment overrides are checked like the file.
    let out = wharf.cli_env(&["check-config"], None, &[("WHARF__SERVER__NOPE", "1")]);
    assert!(
        stderr(&out).contains("server.nope: unknown key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn user_management_commands() {
    let wharf = prepare("");
    let (_, key) = ssh_key("client_alice");
    wharf.add_user(
        "alice",
        Some("pw-1"),
        &[
            "--ssh-key",
            &key,
            "--home-directory-mapping",
            "/=/default/alice",
            "--home-directory-mapping",
            "/in=/default/inbox/alice",
            "--tag",
            "team=blue",
        ],
    );
    let list = wharf.cli(&["user", "list"], None);
    assert!(list.status.success());
    assert!(stdout(&list).contains("alice") && stdout(&list).contains("LOGICAL"));
    let show = wharf.cli(&["user", "show", "alice"], None);
    assert!(show.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(shown["HasPassword"], true);
    assert_eq!(shown["SessionTags"]["team"], "blue");
    assert!(!stdout(&show).contains("argon2"), "a hash was shown");
    let fingerprint = shown["SshPublicKeys"][0]["Fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        wharf
            .cli(&["user", "remove-key", "alice", &fingerprint], None)
            .status
            .success()
    );
    assert_eq!(
        wharf
            .cli(&["user", "remove-key", "alice", &fingerprint], None)
            .status
            .code(),
        Some(1)
    );
    let authorized = wharf.path("authorized_keys");
    std::fs::write(&authorized, format!("# comment\n{key}\n")).unwrap();
    let added = wharf.cli(
        &[
            "user",
            "add-key",
            "alice",
            &format!("@{}", authorized.display()),
        ],
        None,
    );
    assert!(added.status.success(), "{}", stderr(&added));
    assert!(stdout(&added).contains(&fingerprint));
    // Errors are one line and exit 1.
    for (args, stdin, part) in [
        (
            vec!["user", "add", "alice", "--password-stdin"],
            Some("x\n"),
            "already exists",
        ),
        (
            vec!["user", "add", "ab", "--password-stdin"],
            Some("x\n"),
            "3 to 100",
        ),
        (
            vec!["user", "add", "--password-stdin", "--", "-bad"],
            Some("x\n"),
            "must not start",
        ),
        (
            vec!["user", "add", "--bogus-flag", "x"],
            None,
            "unexpected argument",
        ),
        (
            vec![
                "user",
                "add",
                "carol",
                "--password-stdin",
                "--home-directory",
                "/nostore/x",
            ],
            Some("x\n"),
            "not configured",
        ),
        (
            vec!["user", "add", "carol", "--password-stdin", "--role", "nope"],
            Some("x\n"),
            "not in [roles]",
        ),
        (vec!["user", "add", "carol"], None, "needs a password"),
        (vec!["user", "show", "nobody"], None, "no user"),
        (vec!["user", "remove", "nobody"], None, "no user"),
        (
            vec!["user", "add", "carol", "--ssh-key", "not a key"],
            None,
            "not an OpenSSH public key",
        ),
    ] {
        let out = wharf.cli(&args, stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(part), "{args:?}: {}", stderr(&out));
    }
    assert!(
        wharf
            .cli(&["user", "remove", "alice"], None)
            .status
            .success()
    );
    assert!(!stdout(&wharf.cli(&["user", "list"], None)).contains("alice"));
}

#[test]
fn test_idp_for_passwords_and_keys() {
    let wharf = prepare("");
    let (key_path, key) = ssh_key("client_alice");
    wharf.add_user(
        "alice",
        Some("pw-1"),
        &["--ssh-key", &key, "--tag", "team=blue"],
    );
    let ok = wharf.cli(
        &["test-idp", "--user", "alice", "--password-stdin"],
        Some("pw-1\n"),
    );
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let answer: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(answer["StatusCode"], 200);
    assert_eq!(
        answer["Session"]["Home"]["Mappings"][0]["Target"],
        "/default/alice"
    );
    assert_eq!(answer["Session"]["SessionTags"]["team"], "blue");
    assert_eq!(
        answer["Session"]["EffectivePolicies"]["Context"]["aws:PrincipalTag/team"][0],
        "blue"
    );
    let wrong = wharf.cli(
        &["test-idp", "--user", "alice", "--password-stdin"],
        Some("nope\n"),
    );
    assert_eq!(wrong.status.code(), Some(3));
    let answer: serde_json::Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert_eq!(answer["StatusCode"], 401);
    assert_eq!(answer["Denied"], "wrong password");
    let public = format!("{}.pub", key_path.display());
    let by_key = wharf.cli(
        &["test-idp", "--user", "alice", "--public-key", &public],
        None,
    );
    assert_eq!(by_key.status.code(), Some(0), "{}", stdout(&by_key));
    let (_, other) = ssh_key("client_mallory");
    let other_file = wharf.path("other.pub");
    std::fs::write(&other_file, other).unwrap();
    let by_other = wharf.cli(
        &[
            "test-idp",
            "--user",
            "alice",
            "--public-key",
            other_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(by_other.status.code(), Some(3));
}

#[test]
fn policy_simulate_explains_decisions() {
    let wharf = prepare(
        r#"
[roles.partners]
policies = ["partners.json"]
"#,
    );
    std::fs::write(
        wharf.path("partners.json"),
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "OwnFolder", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
             "Resource": "arn:aws:s3:::default/partners/${transfer:UserName}/*"},
            {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*",
             "Resource": "arn:aws:s3:::default/partners/*/secret/*"}
        ]}"#,
    )
    .unwrap();
    wharf.add_user(
        "acme",
        Some("pw"),
        &[
            "--home-directory",
            "/default/partners/acme",
            "--role",
            "partners",
        ],
    );
    let simulate = |action: &str, resource: &str| {
        wharf.cli(
            &[
                "policy",
                "simulate",
                "--user",
                "acme",
                "--action",
                action,
                "--resource",
                resource,
            ],
            None,
        )
    };
    let allowed = simulate("s3:GetObject", "arn:aws:s3:::default/partners/acme/a.csv");
    assert_eq!(allowed.status.code(), Some(0), "{}", stderr(&allowed));
    assert!(stdout(&allowed).starts_with("allowed\n"));
    assert!(stdout(&allowed).contains("OwnFolder"));
    let denied = simulate(
        "s3:GetObject",
        "arn:aws:s3:::default/partners/acme/secret/k",
    );
    assert_eq!(denied.status.code(), Some(3));
    assert!(stdout(&denied).contains("NoSecrets"), "{}", stdout(&denied));
    let implicit = simulate("s3:GetObject", "arn:aws:s3:::default/partners/other/a.csv");
    assert_eq!(implicit.status.code(), Some(3));
    assert!(
        stdout(&implicit).contains("implicit deny"),
        "{}",
        stdout(&implicit)
    );
    let bad = simulate("s3:GetObject", "not-an-arn");
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn the_embedded_default_creates_the_demo_user_once() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = Command::new(binary())
            .arg("serve")
            .current_dir(dir.path())
            .env("WHARF__PROTOCOLS__SFTP__LISTEN", "127.0.0.1:0")
            .env("WHARF__PROTOCOLS__FTPS__LISTEN", "127.0.0.1:0")
            .env(
                "WHARF__SERVER__HOST_KEYS",
                format!("[\"{}\"]", wharf_test_support::wharf::host_key().display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = Vec::new();
        use std::io::BufRead;
        let mut reader = std::io::BufReader::new(stderr);
        let mut port = 0u16;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let line = line.trim().to_owned();
            if let Some(addr) = line.strip_prefix("wharf: SFTP listening on ") {
                port = addr.rsplit(':').next().unwrap().parse().unwrap();
            }
            let ready = line == "wharf: ready";
            lines.push(line);
            if ready {
                break;
            }
        }
        (child, lines, port)
    };
    let (mut first, lines, port) = start();
    let demo = lines
        .iter()
        .find(|l| l.starts_with("demo user created: username=demo password="))
        .cloned();
    let _ = Command::new("kill").arg(first.id().to_string()).status();
    let _ = first.wait();
    let demo = demo.unwrap_or_else(|| panic!("no demo line in {lines:?}"));
    let password = demo.rsplit('=').next().unwrap().to_owned();
    assert!(password.len() >= 16);
    assert!(dir.path().join("wharf-data/users.db").exists());
    // The second start reuses the user store: no new demo user.
    let (mut second, lines, port2) = start();
    assert!(port2 != 0 && port != 0);
    let out = sftp_batch(
        port2,
        "demo",
        &Login::Password(password),
        "pwd\n",
        dir.path(),
        &[],
    );
    let _ = Command::new("kill").arg(second.id().to_string()).status();
    let _ = second.wait();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !lines.iter().any(|l| l.starts_with("demo user created")),
        "{lines:?}"
    );
}

/// Runs `wharf serve` on the prepared config, which must refuse to start:
/// its exit status and stderr. A server that starts anyway is killed (by
/// its PID) after a deadline and the test fails.
fn serve_refuses(wharf: &Wharf) -> (Option<i32>, String) {
    let child = Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(wharf.config_path())
        .current_dir(wharf.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(std::time::Duration::from_secs(60)) {
        Ok(out) => {
            let out = out.unwrap();
            (out.status.code(), stderr(&out))
        }
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("wharf serve started with a configuration it should refuse");
        }
    }
}

/// SPEC section 1: one validation path. A config with an s3 store and a
/// lambda provider is what serve runs, so check-config accepts it (and
/// writes nothing); a problem is refused by both with the same key path.
#[test]
fn check_config_accepts_exactly_what_serve_runs() {
    let s3_and_lambda = r#"
[storage.reports]
kind = "s3"
endpoint = "http://127.0.0.1:9000"
bucket = "reports"
access_key_id = "key"
secret_access_key = "secret"

[identity_provider]
type = "lambda"
url = "http://127.0.0.1:9001/2015-03-31/functions/function/invocations"
"#;
    let wharf = prepare(s3_and_lambda);
    let out = wharf.cli(&["check-config"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("configuration is valid"),
        "{}",
        stdout(&out)
    );
    assert!(!wharf.path("data").exists(), "check-config wrote data_dir");
    assert!(
        !wharf.path("files").exists(),
        "check-config created a store root"
    );

    for (config, key) in [
        (
            s3_and_lambda.replace("http://127.0.0.1:9000", "::not a url::"),
            "storage.reports.endpoint:",
        ),
        (
            "[server]\nban_after_failures = 5\n".to_owned(),
            "server.ban_after_failures:",
        ),
        (
            "[protocols.ftps]\nlisten = \"127.0.0.1:0\"\ncertificate = \"missing.pem\"\nprivate_key = \"missing.key\"\n".to_owned(),
            "protocols.ftps.certificate:",
        ),
    ] {
        // `basic_config` has a [server] section of its own: put the key there.
        let text = basic_config("");
        let text = match config.strip_prefix("[server]\n") {
            Some(keys) => text.replacen("[server]\n", &format!("[server]\n{keys}"), 1),
            None => format!("{text}\n{config}"),
        };
        let wharf = Wharf::prepare(binary(), &text);
        let out = wharf.cli(&["check-config"], None);
        assert_eq!(out.status.code(), Some(1), "{key}: {}", stderr(&out));
        let checked = stderr(&out);
        assert!(
            checked.lines().any(|l| l.starts_with(key)),
            "check-config: {key} missing from {checked}"
        );
        let (status, served) = serve_refuses(&wharf);
        assert_eq!(status, Some(1), "{key}: {served}");
        assert!(
            served.lines().any(|l| l.starts_with(key)),
            "serve: {key} missing from {served}"
        );
        let line = |text: &str| text.lines().find(|l| l.starts_with(key)).map(str::to_owned);
        assert_eq!(line(&checked), line(&served), "the same problem, the same words");
    }
}

/// serve refuses host keys that its security policy cannot offer; so does
/// check-config.
#[test]
fn host_keys_that_the_security_policy_cannot_use_are_refused_by_both() {
    // The test host key is ed25519, which the FIPS policy does not offer.
    let text = basic_config("").replacen(
        "[server]\n",
        "[server]\nsecurity_policy = \"wharf-fips-2025-11\"\n",
        1,
    );
    let wharf = Wharf::prepare(binary(), &text);
    let out = wharf.cli(&["check-config"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("server.host_keys: no host key suits the security policy wharf-fips-2025-11"),
        "{}",
        stderr(&out)
    );
    let (status, served) = serve_refuses(&wharf);
    assert_eq!(status, Some(1));
    assert!(
        served.contains("server.host_keys: no host key suits"),
        "{served}"
    );
}
