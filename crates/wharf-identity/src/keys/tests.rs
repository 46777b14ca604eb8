use std::net::IpAddr;

use time::macros::datetime;

use super::*;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn parse(line: &str) -> AuthorizedKey {
    AuthorizedKey::parse(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn refusal(line: &str) -> String {
    match AuthorizedKey::parse(line) {
        Ok(key) => panic!("{line} was accepted as {key:?}"),
        Err(error) => error,
    }
}

const NOW: OffsetDateTime = datetime!(2026-12-05 08:00 UTC);

#[test]
fn a_plain_key_has_no_restrictions() {
    let key = parse(KEY);
    assert_eq!(key.options(), "");
    assert!(key.permits(ip("203.0.113.9"), NOW).is_ok());
    assert_eq!(key.to_line().unwrap_or_default(), KEY);
}

#[test]
fn the_review_s_line_is_restricted_not_dropped() {
    let line = format!("from=\"10.9.9.9\",expiry-time=\"20000101\",restrict {KEY}");
    let key = parse(&line);
    assert_eq!(key.to_line().unwrap_or_default(), line);
    let expired = key.permits(ip("10.9.9.9"), NOW).expect_err("expired");
    assert!(
        expired.contains("expired at 2000-01-01T00:00:00Z"),
        "{expired}"
    );
    let key = parse(&format!("from=\"10.9.9.9\",restrict {KEY}"));
    assert!(key.permits(ip("10.9.9.9"), NOW).is_ok());
    let elsewhere = key.permits(ip("10.9.9.8"), NOW).expect_err("outside from=");
    assert!(
        elsewhere.contains("does not include 10.9.9.8"),
        "{elsewhere}"
    );
}

#[test]
fn from_takes_addresses_wildcards_blocks_and_negations() {
    let key = parse(&format!(
        "from=\"10.1.*,!10.1.2.*,192.0.2.0/24,2001:db8::/32,!192.0.2.66\" {KEY}"
    ));
    for allowed in [
        "10.1.0.5",
        "10.1.3.4",
        "192.0.2.1",
        "2001:db8::7",
        "::ffff:10.1.9.9",
    ] {
        assert!(key.permits(ip(allowed), NOW).is_ok(), "{allowed}");
    }
    for refused in [
        "10.1.2.3",
        "10.2.0.1",
        "192.0.2.66",
        "2001:db9::1",
        "127.0.0.1",
    ] {
        assert!(key.permits(ip(refused), NOW).is_err(), "{refused}");
    }
    let any = parse(&format!("from=\"*,!127.0.0.?\" {KEY}"));
    assert!(any.permits(ip("198.51.100.1"), NOW).is_ok());
    assert!(any.permits(ip("127.0.0.5"), NOW).is_err());
    assert!(any.permits(ip("127.0.0.50"), NOW).is_ok());
}

#[test]
fn expiry_time_is_read_as_utc_to_the_second() {
    for (text, at) in [
        ("20261205", datetime!(2026-12-05 00:00 UTC)),
        ("202612050800", datetime!(2026-12-05 08:00 UTC)),
        ("20261205080001Z", datetime!(2026-12-05 08:00:01 UTC)),
    ] {
        let key = parse(&format!("expiry-time=\"{text}\" {KEY}"));
        let before = at - time::Duration::seconds(1);
        assert!(key.permits(ip("10.0.0.1"), before).is_ok(), "{text}");
        assert!(key.permits(ip("10.0.0.1"), at).is_err(), "{text}");
    }
}

#[test]
fn options_wharf_does_not_implement_are_refused_by_name() {
    for (options, named) in [
        ("command=\"/bin/sh\"", "command=\"/bin/sh\""),
        ("command=\"internal-sftp -R\"", "internal-sftp -R"),
        ("environment=\"A=b\"", "\"environment\""),
        ("cert-authority", "\"cert-authority\""),
        ("principals=\"alice\"", "\"principals\""),
        ("permitopen=\"host:22\"", "\"permitopen\""),
        ("pty", "\"pty\""),
        ("tunnel=\"1\"", "\"tunnel\""),
        ("no-touch-required", "\"no-touch-required\""),
        ("restrict,verify-required", "\"verify-required\""),
    ] {
        let error = refusal(&format!("{options} {KEY}"));
        assert!(error.contains(named), "{options}: {error}");
    }
}

#[test]
fn harmless_options_are_accepted() {
    for options in [
        "restrict",
        "no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-user-rc",
        "command=\"internal-sftp\"",
        "restrict,command=\"/usr/lib/openssh/sftp-server\"",
        "NO-PTY",
    ] {
        let key = parse(&format!("{options} {KEY}"));
        assert!(key.permits(ip("10.0.0.1"), NOW).is_ok(), "{options}");
    }
}

#[test]
fn malformed_options_are_refused_with_a_reason() {
    for (line, says) in [
        (format!("from=10.0.0.1 {KEY}"), "needs a quoted value"),
        (format!("from=\"10.0.0.1 {KEY}"), "quotes are not closed"),
        (format!("from=\"*.example.com\" {KEY}"), "host name pattern"),
        (format!("from=\"!evil.example\" {KEY}"), "host name pattern"),
        (
            format!("from=\"10.0.0.0/33\" {KEY}"),
            "not an address block",
        ),
        (format!("from=\"10.0.0.1,\" {KEY}"), "empty pattern"),
        (format!("from=\"1.2.3.4\",from=\"1.2.3.5\" {KEY}"), "twice"),
        (format!("expiry-time=\"2026\" {KEY}"), "is not YYYYMMDD"),
        (format!("expiry-time=\"20261301\" {KEY}"), "is not YYYYMMDD"),
        (
            format!("expiry-time=\"202612052500\" {KEY}"),
            "is not YYYYMMDD",
        ),
        (
            "restrict ssh-ed25519 notbase64".to_owned(),
            "not an OpenSSH public key",
        ),
    ] {
        let error = refusal(&line);
        assert!(error.contains(says), "{line}: {error}");
    }
}

#[test]
fn wildcards_match_like_openssh() {
    assert!(wildcard(b"10.*", b"10.1.2.3"));
    assert!(wildcard(b"*", b""));
    assert!(wildcard(b"1?.0.0.1", b"10.0.0.1"));
    assert!(!wildcard(b"1?.0.0.1", b"1.0.0.1"));
    assert!(wildcard(b"*.*.*.4", b"1.2.3.4"));
    assert!(!wildcard(b"10.*.5", b"10.1.2.3"));
}
