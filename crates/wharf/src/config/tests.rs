#![allow(clippy::unwrap_used)]
use super::*;

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.toml");
    std::fs::write(&path, text).unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load(Some(&path), &env)
}

#[test]
fn the_embedded_default_is_valid() {
    let config = load(None, &[]).unwrap();
    assert!(config.is_embedded());
    assert_eq!(config.sftp.unwrap().listen.to_string(), "127.0.0.1:2222");
    assert_eq!(config.ftps.unwrap().listen.to_string(), "127.0.0.1:2121");
    assert!(config.ftp.is_none());
    assert_eq!(config.storage["default"].kind_name(), "filesystem");
    assert_eq!(config.server.idle_timeout, Duration::from_secs(900));
}

#[test]
fn every_problem_is_named_by_its_key_path() {
    let errors = load_text(
        r#"
        bogus_top = 1
        [server]
        bogus_key = 1
        idle_timeout = "soon"
        max_sessions_per_user = "many"
        [protocols.sftp]
        listen = "nowhere"
        [storage.reports]
        kind = "s3"
        endpoint = 5
        root = "/x"
        [storage.files]
        kind = "tape"
        [storage.big]
        kind = "s3"
        upload_part_size = "1MiB"
        [roles.r]
        arn = "nope"
        [identity_provider]
        type = "lambda"
        "#,
        &[],
    )
    .unwrap_err();
    for expected in [
        "bogus_top: unknown key",
        "server.bogus_key: unknown key",
        "server.idle_timeout: \"soon\" is not a duration",
        "server.max_sessions_per_user: expected a whole number of 0 or more, got a string",
        "protocols.sftp.listen: \"nowhere\" is not an address",
        "storage.reports.endpoint: expected a string, got an integer",
        "storage.reports.root: unknown key",
        "storage.files.kind: \"tape\" is not",
        "identity_provider.url: required",
        // What the types cannot say, in sections that did parse, in
        // the same run.
        "storage.big.upload_part_size: must be between 5MiB and 5GiB",
        "roles.r.arn: \"nope\" is not an ARN",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:#?}"
        );
    }
}

#[test]
fn environment_overrides_and_relative_paths() {
    let config = load_text(
        r#"
        [server]
        data_dir = "data"
        [protocols.sftp]
        [storage.Reports]
        kind = "filesystem"
        root = "files"
        "#,
        &[
            ("WHARF__SERVER__MAX_SESSIONS_PER_USER", "3"),
            ("WHARF__PROTOCOLS__SFTP__LISTEN", "127.0.0.1:0"),
            ("WHARF__SERVER__BANNER", "hello there"),
            ("WHARF__STORAGE__REPORTS__ROOT", "/abs/root"),
            ("OTHER", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.max_sessions_per_user, 3);
    assert_eq!(config.server.banner, "hello there");
    assert_eq!(config.sftp.unwrap().listen.port(), 0);
    assert!(config.server.data_dir.ends_with("data") && config.server.data_dir.is_absolute());
    let wharf_storage::config::StoreKind::Filesystem(fs) = &config.storage["Reports"].kind else {
        panic!()
    };
    assert_eq!(fs.root, Path::new("/abs/root"));
    let errors = load_text(
        "[storage.a]\nkind='filesystem'\nroot='x'\n",
        &[("WHARF__SERVER__BOGUS", "1")],
    )
    .unwrap_err();
    assert_eq!(errors, ["server.bogus: unknown key"]);
}

#[test]
fn proxy_protocol_needs_its_trusted_peers() {
    let base = "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n";
    let errors = load_text(&format!("{base}[server]\nproxy_protocol = true\n"), &[]).unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("server.proxy_trusted: required")),
        "{errors:?}"
    );
    let errors = load_text(
        &format!("{base}[server]\nproxy_protocol = true\nproxy_trusted = [\"10.0.0.0/40\"]\n"),
        &[],
    )
    .unwrap_err();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("server.proxy_trusted[0]:")),
        "{errors:?}"
    );
    let config = load_text(
        &format!("{base}[server]\nproxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\", \"2001:db8::1\"]\n"),
        &[],
    )
    .unwrap();
    let proxy = config.server.proxy().unwrap();
    assert!(proxy.trusts("10.1.2.3".parse().unwrap()));
    assert!(proxy.trusts("2001:db8::1".parse().unwrap()));
    assert!(!proxy.trusts("192.0.2.1".parse().unwrap()));
    // Trusted peers alone turn nothing on.
    let config = load_text(
        &format!("{base}[server]\nproxy_trusted = [\"10.0.0.0/8\"]\n"),
        &[],
    )
    .unwrap();
    assert!(config.server.proxy().is_none());
    let config = load_text(
        base,
        &[
            ("WHARF__SERVER__PROXY_PROTOCOL", "true"),
            ("WHARF__SERVER__PROXY_TRUSTED", "[\"127.0.0.1/32\"]"),
        ],
    );
    assert!(config.is_ok_and(|c| c.server.proxy().is_some()));
}

#[test]
fn what_is_not_built_yet_is_refused_not_ignored() {
    let base = "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n";
    for (extra, expected) in [
        (
            "[server]\nban_after_failures = 5\n",
            "server.ban_after_failures:",
        ),
        (
            "[server]\nban_exempt = [\"10.0.0.0/33\"]\n",
            "server.ban_exempt[0]: \"10.0.0.0/33\" is not an address or a CIDR",
        ),
        (
            "[cluster]\ndatabase = \"/var/lib/wharf/cluster.db\"\n",
            "cluster.database: must be a postgres:// URL",
        ),
    ] {
        let errors = load_text(&format!("{base}{extra}"), &[]).unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with(expected)),
            "{expected:?} not in {errors:?}"
        );
    }
}

#[test]
fn ban_keys_are_read() {
    let base = "[storage.a]\nkind = \"filesystem\"\nroot = \"a\"\n";
    let config = load_text(
        &format!("[server]\nban_exempt = [\"10.0.0.0/8\", \"192.0.2.7\"]\n{base}"),
        &[("WHARF__SERVER__BAN_TIME", "1h")],
    )
    .unwrap();
    assert_eq!(config.server.ban_time, Duration::from_secs(3600));
    assert_eq!(config.server.ban_after_failures, 20);
    assert_eq!(config.server.ban_exempt.len(), 2);
}

#[test]
fn s3_endpoints_are_absolute_http_urls() {
    for (endpoint, ok) in [
        ("http://127.0.0.1:9000", true),
        ("https://s3.example.com", true),
        ("https://s3.example.com/prefix/", true),
        ("::not a url::", false),
        ("127.0.0.1:9000", false),
        ("ftp://example.com", false),
        ("http://", false),
        ("http://:9000", false),
        ("http://exa mple.com", false),
    ] {
        let text = format!("[storage.r]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\n");
        match load_text(&text, &[]) {
            Ok(_) => assert!(ok, "{endpoint} was accepted"),
            Err(errors) => {
                assert!(!ok, "{endpoint}: {errors:?}");
                assert_eq!(
                    errors,
                    [format!(
                        "storage.r.endpoint: {endpoint:?} is not an absolute http(s) URL"
                    )]
                );
            }
        }
    }
}
