//! The request being authorized and its condition keys.
//!
//! [`Context`] holds the session-constant keys, built once per login
//! (`aws:PrincipalTag/team`, `transfer:UserName`, `aws:SourceIp`...).
//! [`Request::extra`] holds the few per-request keys (`s3:prefix`,
//! `s3:delimiter`, `s3:ExistingObjectTag/KEY`) and overrides the context.
//! Looking a key up allocates nothing; only a string form of the current time
//! is formatted, and only when a policy asks for it.

use std::cell::OnceCell;
use std::fmt;

use time::OffsetDateTime;

use crate::variables::{Key, Resolver, Special, Var, key_eq, lowercase};

/// Session-constant condition keys: each key has one or more string values.
///
/// Key names are compared case-insensitively, as AWS does (including the tag
/// name after `aws:PrincipalTag/`). Setting a key again replaces its values.
/// A key set with no values counts as absent.
///
/// ```
/// use wharf_policy::Context;
/// let ctx = Context::new()
///     .set("aws:SourceIp", "10.0.0.5")
///     .set("transfer:UserName", "alice")
///     .set_multi("aws:TagKeys", ["team", "project"]);
/// assert_eq!(ctx.get("AWS:SOURCEIP"), Some(&["10.0.0.5".to_string()][..]));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// Sorted by lowercased key.
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Eq)]
struct Entry {
    lower: Box<str>,
    name: Box<str>,
    values: Vec<String>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// Sets `key` to the single `value` (builder form).
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Context {
        self.insert(key, value);
        self
    }

    /// Sets `key` to several values (builder form), e.g. `aws:TagKeys`.
    #[must_use]
    pub fn set_multi<I>(mut self, key: &str, values: I) -> Context
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.insert_multi(key, values);
        self
    }

    /// Sets `key` to the single `value`.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.insert_multi(key, [value]);
    }

    /// Sets `key` to several values.
    pub fn insert_multi<I>(&mut self, key: &str, values: I)
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let lower = lowercase(key);
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        match self.entries.binary_search_by(|e| (*e.lower).cmp(&lower)) {
            Ok(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.name = key.into();
                    e.values = values;
                }
            }
            Err(i) => self.entries.insert(
                i,
                Entry {
                    lower: lower.into_boxed_str(),
                    name: key.into(),
                    values,
                },
            ),
        }
    }

    /// Removes `key`; returns whether it was set.
    pub fn remove(&mut self, key: &str) -> bool {
        let lower = lowercase(key);
        match self.entries.binary_search_by(|e| (*e.lower).cmp(&lower)) {
            Ok(i) => {
                self.entries.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// The values of `key` (case-insensitive), if it is set with at least one.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_lower(&lowercase(key))
    }

    /// Number of keys set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over `(key as first written, values)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries.iter().map(|e| (&*e.name, e.values.as_slice()))
    }

    pub(crate) fn get_lower(&self, lower: &str) -> Option<&[String]> {
        let i = self
            .entries
            .binary_search_by(|e| (*e.lower).cmp(lower))
            .ok()?;
        let values = &self.entries.get(i)?.values;
        (!values.is_empty()).then_some(values.as_slice())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|e| (&e.name, &e.values)))
            .finish()
    }
}

/// One authorization question: may `principal_arn` do `action` on `resource`?
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The action, e.g. `s3:GetObject` (matched case-insensitively).
    pub action: &'a str,
    /// The resource ARN, e.g. `arn:aws:s3:::reports/alice/a.txt`
    /// (matched case-sensitively).
    pub resource: &'a str,
    /// The role ARN, for resource-policy `Principal` matching; also the
    /// value of `aws:PrincipalArn` when the context does not set it.
    pub principal_arn: &'a str,
    /// Session-constant keys, built once per login.
    pub context: &'a Context,
    /// Per-request keys (`s3:prefix`, `s3:delimiter`,
    /// `s3:ExistingObjectTag/KEY`). A key present here hides the same key in
    /// `context`; a key given several times is multi-valued.
    pub extra: &'a [(&'a str, &'a str)],
    /// The time of the request: `aws:CurrentTime` and `aws:EpochTime`
    /// (unless `extra` sets them).
    pub current_time: OffsetDateTime,
}

impl<'a> Request<'a> {
    /// A request without per-request keys.
    pub fn new(
        action: &'a str,
        resource: &'a str,
        principal_arn: &'a str,
        context: &'a Context,
        current_time: OffsetDateTime,
    ) -> Request<'a> {
        Request {
            action,
            resource,
            principal_arn,
            context,
            extra: &[],
            current_time,
        }
    }

    /// The same request with per-request keys.
    #[must_use]
    pub fn with_extra(self, extra: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request { extra, ..self }
    }
}

/// Which string form of the request time a key has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeKey {
    /// ISO 8601, `2024-05-01T12:00:00Z`.
    Iso,
    /// Seconds since the epoch, `1714564800`.
    Epoch,
}

/// The values of a key found during evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'s> {
    List(&'s [String]),
    Extra {
        extra: &'s [(&'s str, &'s str)],
        lower: &'s str,
    },
    One(&'s str),
    /// Derived from `Request::current_time` (whole seconds).
    Time(OffsetDateTime, TimeKey),
}

/// Iterator over the string forms of [`Values`].
pub(crate) enum ValuesIter<'s> {
    List(std::slice::Iter<'s, String>),
    Extra(std::slice::Iter<'s, (&'s str, &'s str)>, &'s str),
    One(Option<&'s str>),
}

impl<'s> Iterator for ValuesIter<'s> {
    type Item = &'s str;

    fn next(&mut self) -> Option<&'s str> {
        match self {
            ValuesIter::List(it) => it.next().map(String::as_str),
            ValuesIter::Extra(it, lower) => it.find(|(k, _)| key_eq(lower, k)).map(|(_, v)| *v),
            ValuesIter::One(v) => v.take(),
        }
    }
}

/// Everything one evaluation reads, plus the lazily formatted time strings.
pub(crate) struct Scope<'a> {
    pub(crate) req: &'a Request<'a>,
    now: OffsetDateTime,
    iso: OnceCell<String>,
    epoch: OnceCell<String>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(req: &'a Request<'a>) -> Scope<'a> {
        // Whole seconds: the precision of aws:CurrentTime / aws:EpochTime.
        let now = req
            .current_time
            .replace_nanosecond(0)
            .unwrap_or(req.current_time);
        Scope {
            req,
            now,
            iso: OnceCell::new(),
            epoch: OnceCell::new(),
        }
    }

    /// Finds `key`: `extra`, then the request time for `aws:CurrentTime` /
    /// `aws:EpochTime`, then `context`, then `principal_arn` for
    /// `aws:PrincipalArn`.
    pub(crate) fn lookup<'s>(&'s self, key: &'s Key) -> Option<Values<'s>> {
        let extra = self.req.extra;
        if extra.iter().any(|(k, _)| key_eq(&key.lower, k)) {
            return Some(Values::Extra {
                extra,
                lower: &key.lower,
            });
        }
        match key.special {
            Special::CurrentTime => return Some(Values::Time(self.now, TimeKey::Iso)),
            Special::EpochTime => return Some(Values::Time(self.now, TimeKey::Epoch)),
            Special::None | Special::PrincipalArn => {}
        }
        if let Some(values) = self.req.context.get_lower(&key.lower) {
            return Some(Values::List(values));
        }
        if key.special == Special::PrincipalArn && !self.req.principal_arn.is_empty() {
            return Some(Values::One(self.req.principal_arn));
        }
        None
    }

    /// The string forms of `values`.
    pub(crate) fn strings<'s>(&'s self, values: Values<'s>) -> ValuesIter<'s> {
        match values {
            Values::List(l) => ValuesIter::List(l.iter()),
            Values::Extra { extra, lower } => ValuesIter::Extra(extra.iter(), lower),
            Values::One(v) => ValuesIter::One(Some(v)),
            Values::Time(_, kind) => ValuesIter::One(Some(self.time_string(kind))),
        }
    }

    fn time_string(&self, kind: TimeKey) -> &str {
        match kind {
            TimeKey::Iso => self.iso.get_or_init(|| format_iso(self.now)),
            TimeKey::Epoch => self
                .epoch
                .get_or_init(|| self.now.unix_timestamp().to_string()),
        }
    }

    /// The single value of a key (for variables); `None` when absent or
    /// multi-valued.
    fn single<'s>(&'s self, key: &'s Key) -> Option<&'s str> {
        let values = self.lookup(key)?;
        let mut it = self.strings(values);
        let first = it.next()?;
        match it.next() {
            None => Some(first),
            Some(_) => None,
        }
    }
}

impl Resolver for Scope<'_> {
    fn resolve<'s>(&'s self, var: &'s Var) -> Option<&'s str> {
        self.single(&var.key).or(var.default.as_deref())
    }
}

/// `2024-05-01T12:00:00Z`, the form of `aws:CurrentTime`.
fn format_iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keys_are_case_insensitive_and_replace() {
        let ctx = Context::new()
            .set("aws:PrincipalTag/Team", "blue")
            .set("AWS:principaltag/team", "red");
        assert_eq!(ctx.len(), 1);
        assert_eq!(ctx.get("aws:principaltag/TEAM").unwrap(), ["red"]);
        let empty = Context::new().set_multi("aws:TagKeys", Vec::<String>::new());
        assert_eq!(empty.get("aws:TagKeys"), None);
    }

    #[test]
    fn lookup_order() {
        let ctx = Context::new()
            .set("s3:prefix", "ctx")
            .set("aws:CurrentTime", "1999-01-01T00:00:00Z");
        let extra = [("S3:Prefix", "a"), ("s3:prefix", "b")];
        let req = Request::new(
            "s3:ListBucket",
            "arn:aws:s3:::b",
            "arn:aws:iam::000000000000:role/r",
            &ctx,
            datetime!(2024-05-01 12:00:00.75 UTC),
        )
        .with_extra(&extra);
        let scope = Scope::new(&req);
        let prefix = Key::new("s3:prefix");
        let got: Vec<&str> = scope.strings(scope.lookup(&prefix).unwrap()).collect();
        assert_eq!(got, ["a", "b"]);
        let now = Key::new("aws:currenttime");
        let got: Vec<&str> = scope.strings(scope.lookup(&now).unwrap()).collect();
        assert_eq!(got, ["2024-05-01T12:00:00Z"]);
        let epoch = Key::new("aws:EpochTime");
        let got: Vec<&str> = scope.strings(scope.lookup(&epoch).unwrap()).collect();
        assert_eq!(got, ["1714564800"]);
        let arn = Key::new("aws:PrincipalArn");
        let got: Vec<&str> = scope.strings(scope.lookup(&arn).unwrap()).collect();
        assert_eq!(got, ["arn:aws:iam::000000000000:role/r"]);
        assert!(scope.lookup(&Key::new("aws:SourceIp")).is_none());
    }
}
