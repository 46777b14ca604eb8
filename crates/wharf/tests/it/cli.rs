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
