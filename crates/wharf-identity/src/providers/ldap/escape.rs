//! Escaping of values put into LDAP filters (RFC 4515) and DNs (RFC 4514),
//! and the loose DN normalisation used to compare group DNs.
//!
//! Written here rather than taken from `ldap3` so that exactly what is
//! escaped is visible and tested: a username must never change the shape
//! of a filter (`*)(uid=*`) or of a DN (`x,ou=admins`).

use std::fmt::Write as _;

/// A value for the assertion part of a search filter (RFC 4515 section 3):
/// `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`;
/// other control characters are hex-escaped too, so that a filter stays
/// one printable line in logs. Everything else (UTF-8 included) is kept.
pub(crate) fn filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '*' | '(' | ')' | '\\' | '\0' => hex(&mut out, c),
            c if c.is_ascii_control() => hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// A value for one attribute of an RDN (RFC 4514 section 2.4): `"`, `+`,
/// `,`, `;`, `<`, `>`, `\` and `=` are backslash-escaped anywhere, `#` and
/// a space at the start and a space at the end too; NUL and other control
/// characters are hex-escaped.
pub(crate) fn dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c if c.is_ascii_control() => hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

fn hex(out: &mut String, c: char) {
    let mut buffer = [0u8; 4];
    for byte in c.encode_utf8(&mut buffer).bytes() {
        let _ = write!(out, "\\{byte:02x}");
    }
}

/// A DN in a form fit for comparing two DNs of the same directory:
/// attribute types and values lower-cased, spaces around separators
/// dropped, escapes (`\,`, `\2C`) resolved and re-escaped one way. This is
/// not full RFC 4517 matching (no schema knowledge), but it equates the
/// spellings directories actually return (`CN=Admins, DC=Example` and
/// `cn=admins,dc=example`). Returns `None` for text that is not a DN.
pub(crate) fn normalize_dn(dn: &str) -> Option<String> {
    let dn = dn.trim();
    if dn.is_empty() {
        return Some(String::new());
    }
    let mut rdns: Vec<String> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut attribute = String::new();
    let mut value: Vec<u8> = Vec::new();
    let mut in_value = false;
    let bytes = dn.as_bytes();
    let mut i = 0;
    let finish_ava =
        |attribute: &mut String, value: &mut Vec<u8>, current: &mut Vec<String>| -> Option<()> {
            let name = attribute.trim().to_ascii_lowercase();
            if name.is_empty() {
                return None;
            }
            let text = String::from_utf8(std::mem::take(value)).ok()?;
            let text = text.trim().to_lowercase();
            current.push(format!("{name}={}", dn_value(&text)));
            attribute.clear();
            Some(())
        };
    while i < bytes.len() {
        let b = bytes[i];
        if !in_value {
            match b {
                b'=' => in_value = true,
                b',' | b'+' | b';' => return None,
                _ => attribute.push(char::from(b)),
            }
            i += 1;
            continue;
        }
        match b {
            b'\\' => {
                let next = *bytes.get(i + 1)?;
                if next.is_ascii_hexdigit() {
                    let pair = bytes.get(i + 1..i + 3)?;
                    let text = std::str::from_utf8(pair).ok()?;
                    value.push(u8::from_str_radix(text, 16).ok()?);
                    i += 3;
                } else {
                    value.push(next);
                    i += 2;
                }
            }
            b',' | b';' => {
                finish_ava(&mut attribute, &mut value, &mut current)?;
                current.sort();
                rdns.push(current.join("+"));
                current.clear();
                in_value = false;
                i += 1;
            }
            b'+' => {
                finish_ava(&mut attribute, &mut value, &mut current)?;
                in_value = false;
                i += 1;
            }
            _ => {
                value.push(b);
                i += 1;
            }
        }
    }
    if !in_value {
        return None;
    }
    finish_ava(&mut attribute, &mut value, &mut current)?;
    current.sort();
    rdns.push(current.join("+"));
    Some(rdns.join(","))
}

/// Whether normalised `dn` is `suffix` or lies below it.
pub(crate) fn is_under(dn: &str, suffix: &str) -> bool {
    if suffix.is_empty() {
        return true;
    }
    dn == suffix
        || dn.strip_suffix(suffix).is_some_and(|head| {
            // A separator, not an escaped comma: an even run of backslashes
            // before it.
            head.strip_suffix(',').is_some_and(|before| {
                before.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 0
            })
        })
}

/// The parent of a normalised DN (`None` for a single RDN).
pub(crate) fn parent(dn: &str) -> Option<&str> {
    // Normalised DNs escape commas inside values as `\,`.
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return dn.get(i + 1..),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[track_caller]
    fn check_filter(input: &str, expected: &str) {
        assert_eq!(filter_value(input), expected, "filter_value({input:?})");
    }

    #[test]
    fn filter_values_are_escaped() {
        check_filter("alice", "alice");
        check_filter("*)(uid=*", "\\2a\\29\\28uid=\\2a");
        check_filter("a\\b", "a\\5cb");
        check_filter("nul\0", "nul\\00");
        check_filter("tab\tnl\n", "tab\\09nl\\0a");
        check_filter("del\x7f", "del\\7f");
        check_filter("jörg@exämple.com", "jörg@exämple.com");
        check_filter("", "");
        // Every escaped value parses as one equality assertion.
        for hostile in [
            "*)(uid=*",
            "*",
            ")(|(uid=*)",
            "\\",
            "a)(objectClass=*))(|(x=",
            "x\0y",
        ] {
            let filter = format!("(uid={})", filter_value(hostile));
            assert!(ldap3::parse_filter(&filter).is_ok(), "{filter}");
            assert!(
                !filter[1..filter.len() - 1].contains(['(', ')', '*']),
                "{filter}"
            );
        }
    }

    #[track_caller]
    fn check_dn(input: &str, expected: &str) {
        assert_eq!(dn_value(input), expected, "dn_value({input:?})");
    }

    #[test]
    fn dn_values_are_escaped() {
        check_dn("alice", "alice");
        check_dn("x,ou=admins", "x\\,ou\\=admins");
        check_dn("a+b", "a\\+b");
        check_dn("\"q\";<>\\", "\\\"q\\\"\\;\\<\\>\\\\");
        check_dn("#hash#", "\\#hash#");
        check_dn(" spaced out ", "\\ spaced out\\ ");
        check_dn(" ", "\\ ");
        check_dn("nul\0", "nul\\00");
        check_dn("jörg", "jörg");
        check_dn("", "");
    }

    #[track_caller]
    fn check_norm(input: &str, expected: Option<&str>) {
        assert_eq!(
            normalize_dn(input).as_deref(),
            expected,
            "normalize_dn({input:?})"
        );
    }

    #[test]
    fn dns_normalise_for_comparison() {
        check_norm(
            "CN=Admins, OU=Groups ,DC=Example,DC=com",
            Some("cn=admins,ou=groups,dc=example,dc=com"),
        );
        check_norm("cn=a\\,b,dc=x", Some("cn=a\\,b,dc=x"));
        check_norm("cn=a\\2Cb,dc=x", Some("cn=a\\,b,dc=x"));
        check_norm("cn=a\\2cb,dc=x", Some("cn=a\\,b,dc=x"));
        check_norm("uid=b+cn=a,dc=x", Some("cn=a+uid=b,dc=x"));
        check_norm("cn=J\\C3\\B6rg,dc=x", Some("cn=jörg,dc=x"));
        check_norm("", Some(""));
        check_norm("no equals", None);
        check_norm("cn=a,", None);
        check_norm("cn=a\\", None);
        check_norm("=a", None);
        let group = normalize_dn("cn=g,ou=groups,dc=example,dc=com").unwrap();
        assert!(is_under(&group, "dc=example,dc=com"));
        assert!(is_under(&group, &group));
        assert!(!is_under(&group, "ample,dc=com"));
        assert!(!is_under("cn=a\\,dc=com", "dc=com"));
        assert!(is_under("cn=a\\\\,dc=com", "dc=com"));
        assert_eq!(parent(&group), Some("ou=groups,dc=example,dc=com"));
        assert_eq!(parent("cn=a\\,b,dc=x"), Some("dc=x"));
        assert_eq!(parent("dc=x"), None);
    }
}
