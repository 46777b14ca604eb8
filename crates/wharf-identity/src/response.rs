//! Validation of an identity provider's response (SPEC section 3).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::{AuthorizedKey, Home, Identity, LogicalEntry, PosixProfile, ValidationContext};

/// The most LOGICAL entries one response may hold.
const MAX_ENTRIES: usize = 10_000;
/// The most public keys one response may hold.
const MAX_KEYS: usize = 100;
/// The most session tags.
const MAX_TAGS: usize = 50;

const KNOWN_FIELDS: [&str; 8] = [
    "Role",
    "Policy",
    "HomeDirectoryType",
    "HomeDirectory",
    "HomeDirectoryDetails",
    "PublicKeys",
    "PosixProfile",
    "SessionTags",
];

/// The most unknown field names one warning names.
const MAX_NAMED_FIELDS: usize = 20;
/// The most characters of one unknown field name a warning shows.
const MAX_NAME_CHARS: usize = 64;

/// The fields of a response object that are not part of the response
/// contract (SPEC section 3), in order.
pub(crate) fn unknown_fields(object: &serde_json::Map<String, Value>) -> Vec<String> {
    object
        .keys()
        .filter(|k| !KNOWN_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// The warning for the unknown fields of one provider answer, naming them
/// and never showing their values (SPEC section 3), or `None` when every
/// field is known. `redact` removes what must not be shown from a name (a
/// provider echoing the password as a key). Names are quoted and escaped,
/// shortened, and at most [`MAX_NAMED_FIELDS`] are named.
pub(crate) fn unknown_fields_warning(
    kind: &str,
    object: &serde_json::Map<String, Value>,
    redact: impl Fn(&str) -> String,
) -> Option<String> {
    let unknown = unknown_fields(object);
    if unknown.is_empty() {
        return None;
    }
    let mut names: Vec<String> = unknown
        .iter()
        .take(MAX_NAMED_FIELDS)
        .map(|name| {
            let name = redact(name);
            let short: String = name.chars().take(MAX_NAME_CHARS).collect();
            let more = if short.len() < name.len() { "..." } else { "" };
            format!("{short:?}{more}")
        })
        .collect();
    if unknown.len() > MAX_NAMED_FIELDS {
        names.push(format!("and {} more", unknown.len() - MAX_NAMED_FIELDS));
    }
    Some(format!(
        "the {kind} identity provider's answer has fields that are not part of the response \
         object, ignored: {}",
        names.join(", ")
    ))
}

/// A value that AWS sends as a JSON string holding JSON, which wharf also
/// accepts as the JSON itself.
fn json_or_string(field: &str, value: &Value) -> Result<Value, String> {
    match value {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| format!("{field} is a string that is not valid JSON: {e}")),
        other => Ok(other.clone()),
    }
}

/// Normalises an absolute path from a response. `..` is an error, not
/// something to resolve: a provider that sends it is confused or hostile.
fn response_path(field: &str, raw: &str, username: &str) -> Result<String, String> {
    let path = raw.replace("${transfer:UserName}", username);
    if !path.starts_with('/') {
        return Err(format!("{field} {raw:?} must be an absolute path"));
    }
    if path.contains('\0') {
        return Err(format!("{field} contains a NUL byte"));
    }
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(format!("{field} {raw:?} must not contain \"..\"")),
            other => {
                if other.len() > 255 {
                    return Err(format!("{field} has a segment longer than 255 bytes"));
                }
                segments.push(other);
            }
        }
    }
    let normal = format!("/{}", segments.join("/"));
    if normal.len() > 1024 {
        return Err(format!("{field} is longer than 1024 bytes"));
    }
    Ok(normal)
}

/// Splits `/STORE/prefix` and checks the store is configured.
fn store_and_prefix(
    field: &str,
    raw: &str,
    username: &str,
    stores: &BTreeSet<String>,
) -> Result<(String, String), String> {
    let path = response_path(field, raw, username)?;
    let mut parts = path[1..].splitn(2, '/');
    let store = parts.next().unwrap_or("");
    if store.is_empty() {
        return Err(format!("{field} {raw:?} must name a store: /STORE/prefix"));
    }
    if !stores.contains(store) {
        return Err(format!(
            "{field} {raw:?} names store {store:?}, which is not configured"
        ));
    }
    Ok((store.to_owned(), parts.next().unwrap_or("").to_owned()))
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

fn logical_entries(
    value: &Value,
    username: &str,
    stores: &BTreeSet<String>,
) -> Result<Vec<LogicalEntry>, String> {
    let details = json_or_string("HomeDirectoryDetails", value)?;
    let Value::Array(items) = details else {
        return Err("HomeDirectoryDetails must be a list of {Entry, Target} objects".to_owned());
    };
    if items.is_empty() {
        return Err("HomeDirectoryDetails is empty".to_owned());
    }
    if items.len() > MAX_ENTRIES {
        return Err(format!(
            "HomeDirectoryDetails has more than {MAX_ENTRIES} entries"
        ));
    }
    let mut seen = BTreeSet::new();
    let mut entries = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let at = format!("HomeDirectoryDetails[{index}]");
        let Value::Object(object) = item else {
            return Err(format!("{at} must be an object with Entry and Target"));
        };
        for key in object.keys() {
            if !matches!(key.as_str(), "Entry" | "Target" | "Type") {
                return Err(format!("{at} has an unknown field {key:?}"));
            }
        }
        let entry_raw = string_field(object, "Entry")
            .map_err(|e| format!("{at}.{e}"))?
            .ok_or_else(|| format!("{at} has no Entry"))?;
        let target_raw = string_field(object, "Target")
            .map_err(|e| format!("{at}.{e}"))?
            .ok_or_else(|| format!("{at} has no Target"))?;
        let is_file = match string_field(object, "Type").map_err(|e| format!("{at}.{e}"))? {
            None | Some("DIRECTORY") => false,
            Some("FILE") => true,
            Some(other) => {
                return Err(format!(
                    "{at}.Type must be DIRECTORY or FILE, got {other:?}"
                ));
            }
        };
        let entry = response_path(&format!("{at}.Entry"), entry_raw, username)?;
        if !seen.insert(entry.clone()) {
            return Err(format!("{at}.Entry {entry:?} appears more than once"));
        }
        if is_file && entry == "/" {
            return Err(format!("{at}: the Entry \"/\" cannot be a FILE"));
        }
        let (store, prefix) =
            store_and_prefix(&format!("{at}.Target"), target_raw, username, stores)?;
        if is_file && prefix.is_empty() {
            return Err(format!("{at}.Target of a FILE entry must name an object"));
        }
        entries.push(LogicalEntry {
            entry,
            store,
            prefix,
            is_file,
        });
    }
    Ok(entries)
}

fn session_tags(value: &Value) -> Result<BTreeMap<String, String>, String> {
    let tags = json_or_string("SessionTags", value)?;
    let Value::Object(object) = tags else {
        return Err("SessionTags must be an object of {\"key\": \"value\"}".to_owned());
    };
    if object.len() > MAX_TAGS {
        return Err(format!("SessionTags has more than {MAX_TAGS} tags"));
    }
    let mut out = BTreeMap::new();
    for (key, value) in object {
        if key.is_empty() || key.len() > 128 {
            return Err("SessionTags keys must be 1 to 128 characters".to_owned());
        }
        let Value::String(value) = value else {
            return Err(format!("SessionTags.{key} must be a string"));
        };
        if value.len() > 256 {
            return Err(format!("SessionTags.{key} is longer than 256 characters"));
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn posix_profile(value: &Value) -> Result<PosixProfile, String> {
    let Value::Object(object) = value else {
        return Err("PosixProfile must be an object with Uid and Gid".to_owned());
    };
    let id = |field: &str| -> Result<u32, String> {
        object
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("PosixProfile.{field} must be a number from 0 to 4294967295"))
    };
    let secondary = match object.get("SecondaryGids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| "PosixProfile.SecondaryGids must hold numbers".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("PosixProfile.SecondaryGids must be a list".to_owned()),
    };
    Ok(PosixProfile {
        uid: id("Uid")?,
        gid: id("Gid")?,
        secondary_gids: secondary,
    })
}

/// Validates a response object into an [`Identity`], or says precisely why
/// it denies the login.
pub fn validate_response(
    response: &Value,
    username: &str,
    context: &ValidationContext,
) -> Result<Identity, String> {
    let Value::Object(object) = response else {
        return Err("the response is not a JSON object".to_owned());
    };
    if object.is_empty() {
        return Err("the identity provider returned an empty response (denied)".to_owned());
    }
    let unknown_fields = unknown_fields(object);

    let role = match string_field(object, "Role")? {
        None => None,
        Some(role) if role.starts_with("arn:") => Some(
            context
                .roles
                .iter()
                .find(|(_, arn)| arn.as_str() == role)
                .map(|(name, _)| name.clone())
                .ok_or_else(|| format!("Role {role:?} is not the ARN of a role in [roles]"))?,
        ),
        Some(role) => {
            if !context.roles.contains_key(role) {
                return Err(format!("Role {role:?} is not in [roles]"));
            }
            Some(role.to_owned())
        }
    };

    let policy = match object.get("Policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(value) => {
            let policy = json_or_string("Policy", value)?;
            if !policy.is_object() {
                return Err("Policy must be an IAM policy document (a JSON object)".to_owned());
            }
            if let Some(check) = &context.check_policy {
                check(&policy).map_err(|e| format!("Policy does not parse: {e}"))?;
            }
            Some(policy)
        }
    };

    let home_type = string_field(object, "HomeDirectoryType")?.unwrap_or("PATH");
    let home_directory = string_field(object, "HomeDirectory")?;
    let details = object.get("HomeDirectoryDetails").filter(|v| !v.is_null());
    if home_directory.is_some() && details.is_some() {
        return Err("HomeDirectory and HomeDirectoryDetails are exclusive".to_owned());
    }
    let home = match home_type {
        "PATH" => {
            if details.is_some() {
                return Err("HomeDirectoryDetails needs HomeDirectoryType LOGICAL".to_owned());
            }
            let raw = home_directory.ok_or_else(|| {
                "the response has no HomeDirectory (or LOGICAL HomeDirectoryDetails)".to_owned()
            })?;
            let (store, prefix) =
                store_and_prefix("HomeDirectory", raw, username, &context.stores)?;
            Home::Path { store, prefix }
        }
        "LOGICAL" => {
            let details = details
                .ok_or_else(|| "HomeDirectoryType LOGICAL needs HomeDirectoryDetails".to_owned())?;
            Home::Logical(logical_entries(details, username, &context.stores)?)
        }
        other => {
            return Err(format!(
                "HomeDirectoryType must be PATH or LOGICAL, got {other:?}"
            ));
        }
    };

    let public_keys = match object.get("PublicKeys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_KEYS {
                return Err(format!("PublicKeys has more than {MAX_KEYS} keys"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(line) => {
                        AuthorizedKey::parse(line).map_err(|e| format!("PublicKeys[{i}]: {e}"))
                    }
                    _ => Err(format!("PublicKeys[{i}] must be a string")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("PublicKeys must be a list of OpenSSH public keys".to_owned()),
    };

    let posix_profile = match object.get("PosixProfile") {
        None | Some(Value::Null) => None,
        Some(value) => Some(posix_profile(value)?),
    };
    let session_tags = match object.get("SessionTags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => session_tags(value)?,
    };

    Ok(Identity {
        username: username.to_owned(),
        role,
        policy,
        home,
        public_keys,
        posix_profile,
        session_tags,
        unknown_fields,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn context() -> ValidationContext {
        ValidationContext {
            stores: ["default", "reports"]
                .into_iter()
                .map(String::from)
                .collect(),
            roles: [(
                "readers".to_owned(),
                "arn:aws:iam::000000000000:role/readers".to_owned(),
            )]
            .into_iter()
            .collect(),
            check_policy: Some(std::sync::Arc::new(|policy: &Value| {
                if policy.get("Statement").is_some() {
                    Ok(())
                } else {
                    Err("no Statement".to_owned())
                }
            })),
        }
    }

    #[track_caller]
    fn check(response: Value, expected: Result<&str, &str>) {
        let got = validate_response(&response, "alice", &context());
        match (got, expected) {
            (Ok(identity), Ok(home)) => assert_eq!(format!("{:?}", identity.home), home),
            (Err(reason), Err(part)) => assert!(reason.contains(part), "{reason:?} lacks {part:?}"),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

    #[test]
    fn valid_responses() {
        check(
            json!({"HomeDirectory": "/reports/${transfer:UserName}"}),
            Ok(r#"Path { store: "reports", prefix: "alice" }"#),
        );
        check(
            json!({"HomeDirectory": "/reports//a/./b/"}),
            Ok(r#"Path { store: "reports", prefix: "a/b" }"#),
        );
        check(
            json!({"HomeDirectory": "/reports"}),
            Ok(r#"Path { store: "reports", prefix: "" }"#),
        );
        check(
            json!({"HomeDirectoryType": "LOGICAL",
                   "HomeDirectoryDetails": "[{\"Entry\": \"/\", \"Target\": \"/default/${transfer:UserName}\"}]"}),
            Ok(
                r#"Logical([LogicalEntry { entry: "/", store: "default", prefix: "alice", is_file: false }])"#,
            ),
        );
        check(
            json!({"HomeDirectoryType": "LOGICAL",
                   "HomeDirectoryDetails": [
                       {"Entry": "/in", "Target": "/default/in"},
                       {"Entry": "/readme", "Target": "/reports/r.txt", "Type": "FILE"}]}),
            Ok(
                r#"Logical([LogicalEntry { entry: "/in", store: "default", prefix: "in", is_file: false }, LogicalEntry { entry: "/readme", store: "reports", prefix: "r.txt", is_file: true }])"#,
            ),
        );
    }

    #[test]
    fn invalid_responses_say_why() {
        check(json!({}), Err("empty response"));
        check(json!([]), Err("not a JSON object"));
        check(json!({"Role": "readers"}), Err("no HomeDirectory"));
        check(
            json!({"HomeDirectory": "/default/a", "HomeDirectoryDetails": "[]"}),
            Err("exclusive"),
        );
        check(
            json!({"HomeDirectoryType": "LOGICAL"}),
            Err("needs HomeDirectoryDetails"),
        );
        check(
            json!({"HomeDirectoryType": "logical", "HomeDirectory": "/default"}),
            Err("PATH or LOGICAL"),
        );
        check(json!({"HomeDirectory": "default/a"}), Err("absolute"));
        check(json!({"HomeDirectory": "/default/../etc"}), Err("\"..\""));
        check(
            json!({"HomeDirectory": "/nostore/a"}),
            Err("not configured"),
        );
        check(json!({"HomeDirectory": "/"}), Err("must name a store"));
        check(json!({"HomeDirectory": 5}), Err("must be a string"));
        let logical = |details: Value| json!({"HomeDirectoryType": "LOGICAL", "HomeDirectoryDetails": details});
        check(logical(json!("not json")), Err("not valid JSON"));
        check(logical(json!([])), Err("empty"));
        check(
            logical(json!([{"Entry": "in", "Target": "/default/x"}])),
            Err("absolute"),
        );
        check(
            logical(json!([{"Entry": "/a/../b", "Target": "/default/x"}])),
            Err("\"..\""),
        );
        check(
            logical(json!([{"Entry": "/a", "Target": "/default/../x"}])),
            Err("\"..\""),
        );
        check(
            logical(
                json!([{"Entry": "/a", "Target": "/default/x"}, {"Entry": "/a/", "Target": "/default/y"}]),
            ),
            Err("more than once"),
        );
        check(
            logical(json!([{"Entry": "/a", "Target": "/elsewhere/x"}])),
            Err("not configured"),
        );
        check(logical(json!([{"Entry": "/a"}])), Err("no Target"));
        check(
            logical(json!([{"Entry": "/a", "Target": "/default/x", "Type": "LINK"}])),
            Err("DIRECTORY or FILE"),
        );
        check(
            logical(json!([{"Entry": "/a", "Target": "/default/x", "Extra": 1}])),
            Err("unknown field"),
        );
        check(
            logical(json!([{"Entry": "/a", "Target": "/default", "Type": "FILE"}])),
            Err("must name an object"),
        );
        check(
            json!({"HomeDirectory": "/default", "Role": "writers"}),
            Err("not in [roles]"),
        );
        check(
            json!({"HomeDirectory": "/default", "Role": "arn:aws:iam::1:role/x"}),
            Err("not the ARN"),
        );
        check(
            json!({"HomeDirectory": "/default", "Policy": "{"}),
            Err("not valid JSON"),
        );
        check(
            json!({"HomeDirectory": "/default", "Policy": {"Version": "2012-10-17"}}),
            Err("does not parse"),
        );
        check(
            json!({"HomeDirectory": "/default", "PublicKeys": ["nonsense"]}),
            Err("PublicKeys[0]"),
        );
        check(
            json!({"HomeDirectory": "/default", "SessionTags": {"team": 1}}),
            Err("must be a string"),
        );
        check(
            json!({"HomeDirectory": "/default", "PosixProfile": {"Uid": -1, "Gid": 0}}),
            Err("Uid"),
        );
    }

    #[test]
    fn unknown_fields_are_named_never_shown() {
        let object = |value: Value| value.as_object().unwrap().clone();
        let none = |name: &str| name.to_owned();
        assert_eq!(
            unknown_fields_warning(
                "lambda",
                &object(json!({"HomeDirectory": "/default", "Role": "r"})),
                none
            ),
            None
        );
        let warning = unknown_fields_warning(
            "lambda",
            &object(json!({
                "HomeDirectory": "/default",
                "Foo": "secret-value",
                "Bar": {"nested": "secret-value"}
            })),
            none,
        )
        .unwrap();
        assert!(warning.contains("\"Foo\""), "{warning}");
        assert!(warning.contains("\"Bar\""), "{warning}");
        assert!(warning.contains("lambda"), "{warning}");
        assert!(!warning.contains("secret-value"), "{warning}");
        assert!(!warning.contains("HomeDirectory"), "{warning}");
        // Hostile names: escaped, shortened, counted, redacted.
        let mut hostile = serde_json::Map::new();
        hostile.insert("line\nbreak".into(), json!(1));
        hostile.insert("x".repeat(500), json!(1));
        hostile.insert("pw-hunter2".into(), json!(1));
        let warning =
            unknown_fields_warning("command", &hostile, |n| n.replace("hunter2", "***")).unwrap();
        assert!(!warning.contains('\n'), "{warning}");
        assert!(warning.contains("line\\nbreak"), "{warning}");
        assert!(
            warning.contains(&format!("\"{}\"...", "x".repeat(64))),
            "{warning}"
        );
        assert!(!warning.contains(&"x".repeat(65)), "{warning}");
        assert!(warning.contains("pw-***"), "{warning}");
        assert!(!warning.contains("hunter2"), "{warning}");
        let many: serde_json::Map<String, Value> =
            (0..33).map(|i| (format!("f{i:02}"), json!(i))).collect();
        let warning = unknown_fields_warning("command", &many, none).unwrap();
        assert!(warning.contains("\"f19\", and 13 more"), "{warning}");
        assert!(!warning.contains("f20"), "{warning}");
    }

    #[test]
    fn fields_are_carried_into_the_identity() {
        let response = json!({
            "Role": "arn:aws:iam::000000000000:role/readers",
            "Policy": "{\"Version\": \"2012-10-17\", \"Statement\": []}",
            "HomeDirectory": "/default/alice",
            "PublicKeys": [KEY],
            "PosixProfile": {"Uid": 1000, "Gid": 100, "SecondaryGids": [10]},
            "SessionTags": "{\"team\": \"blue\"}",
            "Surprise": true
        });
        let identity = validate_response(&response, "alice", &context()).unwrap();
        assert_eq!(identity.role.as_deref(), Some("readers"));
        assert!(identity.policy.unwrap().get("Statement").is_some());
        assert_eq!(identity.public_keys.len(), 1);
        assert_eq!(identity.posix_profile.unwrap().secondary_gids, [10]);
        assert_eq!(identity.session_tags["team"], "blue");
        assert_eq!(identity.unknown_fields, ["Surprise"]);
    }
}
