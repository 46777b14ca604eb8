//! Public keys as `authorized_keys` lines: OpenSSH options, then the key.
//!
//! The same rules apply wherever a key comes from (`wharf user add --ssh-key`,
//! an `@authorized_keys` file, a provider's `PublicKeys`):
//!
//! * `from="pattern-list"` is honoured: the client's address must match a
//!   pattern (an address with `*`/`?` wildcards, or a CIDR block) and no
//!   negated one (`!pattern`). Host *names* are refused: wharf does not look
//!   names up (OpenSSH's `UseDNS no`), so a name pattern could never match,
//!   and a negated one would silently allow.
//! * `expiry-time="YYYYMMDD[HHMM[SS]][Z]"` is honoured: the key is refused
//!   from that instant. The time is read as UTC, with or without `Z` (OpenSSH
//!   reads it in the server's local time zone unless `Z`; a gateway's zone is
//!   an accident of its deployment, so wharf does not depend on it).
//! * `restrict` and the `no-*` restrictions (`no-agent-forwarding`,
//!   `no-port-forwarding`, `no-pty`, `no-user-rc`, `no-X11-forwarding`) are
//!   accepted: wharf never offers what they take away.
//! * `command="internal-sftp"` (or the path of an `sftp-server`, without
//!   arguments) is accepted: it is what wharf serves anyway.
//! * Every other option is refused with its name, never dropped: a key that
//!   was meant to be restricted must not become an unrestricted one.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use russh::keys::PublicKey;
use time::OffsetDateTime;

/// The longest `from=` list (patterns), against unbounded work per login.
const MAX_FROM_PATTERNS: usize = 64;

/// A public key with the options that restrict it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizedKey {
    pub key: PublicKey,
    /// The options exactly as given (without surrounding blanks), "" for none.
    options: String,
    from: Option<Vec<AddressPattern>>,
    expires: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq)]
struct AddressPattern {
    negated: bool,
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq)]
enum PatternKind {
    Net(IpNet),
    /// Lower-case, with `*` and `?`.
    Wildcard(String),
}

impl AuthorizedKey {
    /// Parses `[options ]keytype base64 [comment]`.
    pub fn parse(line: &str) -> Result<AuthorizedKey, String> {
        let line = line.trim();
        if let Ok(key) = PublicKey::from_openssh(line) {
            return Ok(AuthorizedKey::plain(key));
        }
        let (options, rest) = split_options(line)?;
        let key = PublicKey::from_openssh(rest.trim_start())
            .map_err(|e| format!("not an OpenSSH public key: {e}"))?;
        let mut parsed = AuthorizedKey::plain(key);
        parsed.options = options.to_owned();
        for option in split_unquoted(options, ',') {
            parsed.apply(option)?;
        }
        Ok(parsed)
    }

    /// A key with no options.
    pub fn plain(key: PublicKey) -> AuthorizedKey {
        AuthorizedKey {
            key,
            options: String::new(),
            from: None,
            expires: None,
        }
    }

    /// The options as given, "" for none.
    pub fn options(&self) -> &str {
        &self.options
    }

    /// The `authorized_keys` line: options, key type, key, comment.
    pub fn to_line(&self) -> Result<String, String> {
        let key = self
            .key
            .to_openssh()
            .map_err(|e| format!("cannot encode a public key: {e}"))?;
        Ok(if self.options.is_empty() {
            key
        } else {
            format!("{} {key}", self.options)
        })
    }

    fn apply(&mut self, option: &str) -> Result<(), String> {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (option, None),
        };
        let lower = name.to_ascii_lowercase();
        match (lower.as_str(), value) {
            (
                "restrict"
                | "no-agent-forwarding"
                | "no-port-forwarding"
                | "no-pty"
                | "no-user-rc"
                | "no-x11-forwarding",
                None,
            ) => Ok(()),
            ("from", Some(value)) => {
                if self.from.is_some() {
                    return Err("from= is given twice".to_owned());
                }
                self.from = Some(parse_from(&dequote(name, value)?)?);
                Ok(())
            }
            ("expiry-time", Some(value)) => {
                if self.expires.is_some() {
                    return Err("expiry-time= is given twice".to_owned());
                }
                self.expires = Some(parse_expiry(&dequote(name, value)?)?);
                Ok(())
            }
            ("command", Some(value)) => {
                let command = dequote(name, value)?;
                let program = command.rsplit('/').next().unwrap_or_default();
                if command == "internal-sftp"
                    || (command.starts_with('/') && program == "sftp-server")
                {
                    Ok(())
                } else {
                    Err(format!(
                        "authorized_keys option command={command:?} is not supported by wharf \
                         (only command=\"internal-sftp\" without arguments: wharf serves SFTP only)"
                    ))
                }
            }
            _ => Err(format!(
                "authorized_keys option {name:?} is not supported by wharf (supported: from=, \
                 expiry-time=, restrict, no-agent-forwarding, no-port-forwarding, no-pty, \
                 no-user-rc, no-X11-forwarding, command=\"internal-sftp\")"
            )),
        }
    }

    /// Whether this key may log in from `source` at `now`; the error says
    /// why not (for the log, never for the client).
    pub fn permits(&self, source: IpAddr, now: OffsetDateTime) -> Result<(), String> {
        if let Some(expires) = self.expires
            && now >= expires
        {
            return Err(format!("the key expired at {}", rfc3339(expires)));
        }
        if let Some(patterns) = &self.from {
            let source = source.to_canonical();
            let text = source.to_string();
            let matches = |p: &AddressPattern| match &p.kind {
                PatternKind::Net(net) => net.contains(&source),
                PatternKind::Wildcard(pattern) => wildcard(pattern.as_bytes(), text.as_bytes()),
            };
            if patterns.iter().any(|p| p.negated && matches(p)) {
                return Err(format!("the key's from= list excludes {source}"));
            }
            if !patterns.iter().any(|p| !p.negated && matches(p)) {
                return Err(format!("the key's from= list does not include {source}"));
            }
        }
        Ok(())
    }
}

impl fmt::Display for AuthorizedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_line() {
            Ok(line) => f.write_str(&line),
            Err(_) => f.write_str(&crate::fingerprint(&self.key)),
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.unix_timestamp().to_string())
}

/// The options field (up to the first blank outside quotes) and the rest.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => return Ok((&line[..i], &line[i..])),
            _ => {}
        }
    }
    Err(if quoted {
        "not an OpenSSH public key: an option's quotes are not closed".to_owned()
    } else {
        "not an OpenSSH public key".to_owned()
    })
}

/// Splits on `separator` outside double quotes.
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `"value"` → `value` (with `\"` unescaped), as OpenSSH requires.
fn dequote(name: &str, value: &str) -> Result<String, String> {
    let inner = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|_| value.len() >= 2)
        .ok_or_else(|| format!("authorized_keys option {name}= needs a quoted value"))?;
    Ok(inner.replace("\\\"", "\""))
}

fn parse_from(list: &str) -> Result<Vec<AddressPattern>, String> {
    let mut patterns = Vec::new();
    for raw in list.split(',') {
        let raw = raw.trim();
        let (negated, pattern) = match raw.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        if pattern.is_empty() {
            return Err(format!("from=\"{list}\" has an empty pattern"));
        }
        let kind = if pattern.contains('/') {
            let net: IpNet = pattern
                .parse()
                .map_err(|_| format!("from=: {pattern:?} is not an address block"))?;
            PatternKind::Net(net.trunc())
        } else if pattern
            .chars()
            .all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '*' | '?'))
            && (pattern.contains(['.', ':']) || pattern.chars().all(|c| matches!(c, '*' | '?')))
        {
            PatternKind::Wildcard(pattern.to_ascii_lowercase())
        } else {
            return Err(format!(
                "from=: {pattern:?} is a host name pattern; wharf matches client addresses only \
                 (use addresses, wildcards such as 10.1.*, or blocks such as 10.1.0.0/16)"
            ));
        };
        patterns.push(AddressPattern { negated, kind });
    }
    if patterns.len() > MAX_FROM_PATTERNS {
        return Err(format!("from= has more than {MAX_FROM_PATTERNS} patterns"));
    }
    Ok(patterns)
}

fn parse_expiry(text: &str) -> Result<OffsetDateTime, String> {
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let bad =
        || format!("expiry-time=\"{text}\" is not YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS (UTC)");
    if !matches!(digits.len(), 8 | 12 | 14) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let number = |range: std::ops::Range<usize>| -> u32 {
        digits
            .get(range)
            .and_then(|s| s.parse().ok())
            .unwrap_or_default()
    };
    let month =
        time::Month::try_from(u8::try_from(number(4..6)).map_err(|_| bad())?).map_err(|_| bad())?;
    let date = time::Date::from_calendar_date(
        i32::try_from(number(0..4)).map_err(|_| bad())?,
        month,
        u8::try_from(number(6..8)).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    let (hour, minute, second) = match digits.len() {
        8 => (0, 0, 0),
        12 => (number(8..10), number(10..12), 0),
        _ => (number(8..10), number(10..12), number(12..14)),
    };
    let at = time::Time::from_hms(
        u8::try_from(hour).map_err(|_| bad())?,
        u8::try_from(minute).map_err(|_| bad())?,
        u8::try_from(second).map_err(|_| bad())?,
    )
    .map_err(|_| bad())?;
    Ok(date.with_time(at).assume_utc())
}

/// OpenSSH-style wildcard match: `*` any run, `?` one character.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                back = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    p = bp + 1;
                    t = bt + 1;
                    back = Some((bp, bt + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests;
