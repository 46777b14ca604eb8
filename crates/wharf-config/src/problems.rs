//! Every problem of a configuration, each named by its dotted key path.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use toml::Value;

/// The problems found so far, in the order found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records `message` about the key at `path` (empty: the whole file).
    pub fn push(&mut self, path: &str, message: impl std::fmt::Display) {
        if path.is_empty() {
            self.0.push(message.to_string());
        } else {
            self.0.push(format!("{path}: {message}"));
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn extend(&mut self, other: Problems) {
        self.0.extend(other.0);
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }

    /// `Ok(value)` when nothing was found, else every problem.
    pub fn into_result<T>(self, value: T) -> Result<T, Problems> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<String> for Problems {
    fn from(problem: String) -> Problems {
        Problems(vec![problem])
    }
}

/// `prefix.key`, or `key` at the top.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// At most this many problems are reported for one section (each is taken
/// out of the section before it is read again).
const MAX_PROBLEMS_PER_SECTION: usize = 64;

/// Reads the section `value`, found at `path`, into `T`. Every problem is
/// recorded with its key path: after each one the offending key is taken
/// out and the section read again, so a file with five mistakes gets five
/// messages. `None` when there was any problem.
pub fn section<T: DeserializeOwned>(
    value: Value,
    path: &str,
    problems: &mut Problems,
) -> Option<T> {
    let mut value = value;
    let mut found = false;
    // Keys taken out after a problem; that they are then missing is not
    // another problem.
    let mut removed: Vec<Vec<String>> = Vec::new();
    for _ in 0..MAX_PROBLEMS_PER_SECTION {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(parsed) => return (!found).then_some(parsed),
            Err(error) => error,
        };
        found = true;
        let mut segments: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                Segment::Map { key } => Some(key.clone()),
                Segment::Seq { index } => Some(format!("[{index}]")),
                Segment::Enum { .. } | Segment::Unknown => None,
            })
            .collect();
        let (missing, message) = describe(error.inner().message());
        if let Some(key) = &missing {
            segments.push(key.clone());
            if removed.contains(&segments) {
                return None;
            }
        }
        problems.push(&key_path(path, &segments), message);
        removed.push(segments.clone());
        // A missing key cannot be taken out; anything else can.
        if missing.is_some() || segments.is_empty() || !remove(&mut value, &segments) {
            return None;
        }
    }
    None
}

/// `storage.reports` + [`endpoint`] -> `storage.reports.endpoint`; list
/// indexes attach without a dot (`ban_exempt[0]`).
fn key_path(prefix: &str, segments: &[String]) -> String {
    let mut path = prefix.to_owned();
    for segment in segments {
        if segment.starts_with('[') || path.is_empty() {
            path.push_str(segment);
        } else {
            path.push('.');
            path.push_str(segment);
        }
    }
    path
}

/// Takes the value at `segments` out of `value`; for a bad list item, the
/// whole list (taking the item alone would shift the indexes of the items
/// after it, and name them wrongly).
fn remove(value: &mut Value, segments: &[String]) -> bool {
    let keys = segments
        .iter()
        .position(|s| s.starts_with('['))
        .unwrap_or(segments.len());
    let segments = &segments[..keys];
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let next = match (current, segment.strip_prefix('[')) {
            (Value::Array(items), Some(index)) => index
                .trim_end_matches(']')
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get_mut(i)),
            (Value::Table(table), None) => table.get_mut(segment.as_str()),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return false,
        }
    }
    match current {
        Value::Table(table) => table.remove(last.as_str()).is_some(),
        _ => false,
    }
}

/// serde's message, in the file's terms: `(missing key, message)`.
fn describe(message: &str) -> (Option<String>, String) {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let key = rest.trim_end_matches('`').to_owned();
        return (Some(key), "required, missing".to_owned());
    }
    if message.starts_with("unknown field `") {
        return (None, "unknown key".to_owned());
    }
    if let Some((name, expected)) = message
        .strip_prefix("unknown variant `")
        .and_then(|rest| rest.split_once("`, expected "))
    {
        let expected = expected.replace('`', "\"");
        return (None, format!("\"{name}\" is not {expected}"));
    }
    if let Some((got, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let message = format!(
            "expected {}, got {}",
            expectation(expected),
            unexpected(got, false)
        );
        return (None, message);
    }
    if let Some((got, expected)) = message
        .strip_prefix("invalid value: ")
        .and_then(|rest| rest.split_once(", expected "))
    {
        let message = format!(
            "{} is out of range for {}",
            unexpected(got, true),
            expectation(expected)
        );
        return (None, message);
    }
    (None, message.to_owned())
}

/// serde's `Unexpected` as a TOML user reads it; `literal`: the value
/// itself where serde quotes it.
fn unexpected(got: &str, literal: bool) -> String {
    let kind = got.split([' ', '`']).next().unwrap_or(got);
    match kind {
        "string" => "a string".to_owned(),
        "integer" => match got.split('`').nth(1) {
            Some(n) if literal => n.to_owned(),
            _ => "an integer".to_owned(),
        },
        "floating" => "a float".to_owned(),
        "boolean" => "a boolean".to_owned(),
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        _ => got.to_owned(),
    }
}

/// serde's expectation (`u32`, `a sequence`, `struct ServerConfig`) as a
/// TOML user reads it.
fn expectation(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of 0 or more".to_owned(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".to_owned(),
        "a boolean" => "true or false".to_owned(),
        "a sequence" => "a list".to_owned(),
        other if other.starts_with("struct ") || other.starts_with("a map") => "a table".to_owned(),
        other => other.to_owned(),
    }
}
