//! `[identity_provider.attributes]`: which directory attribute gives which
//! response field, and the response object built from a user's entry.
//!
//! * `HomeDirectory`, `HomeDirectoryType`, `HomeDirectoryDetails`, `Role`,
//!   `Policy`: one attribute each, which must hold at most one value (LDAP
//!   values are unordered, so picking one of several would be arbitrary);
//!   `HomeDirectoryDetails` and `Policy` hold JSON text, as AWS sends them.
//! * `PublicKeys`: a multi-valued attribute, one OpenSSH key per value;
//!   `sshPublicKey` (the openssh-lpk schema) unless mapped.
//! * `SessionTags`: a table `tag = "attribute"`; each attribute must hold at
//!   most one value.
//! * `PosixProfile`: either an attribute holding the JSON object
//!   (`PosixProfile = "wharfPosixProfile"`), or a table naming the
//!   attributes of the numbers: `PosixProfile = { Uid = "uidNumber", Gid =
//!   "gidNumber", SecondaryGids = "..." }` (SecondaryGids optional and
//!   multi-valued), as a `posixAccount` holds them.
//!
//! An attribute the entry lacks leaves its field out; the response then
//! goes through the same validation as every provider's.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::UserEntry;
use crate::providers::ProviderConfigError;

/// The attribute of `PublicKeys` unless mapped.
pub const DEFAULT_PUBLIC_KEYS_ATTRIBUTE: &str = "sshPublicKey";

// The response fields that `attributes` may map.
use crate::response::RESPONSE_FIELDS as FIELDS;

/// One value of the `attributes` table: an attribute name, or a table
/// (`SessionTags`: tag -> attribute; `PosixProfile`: Uid/Gid/SecondaryGids
/// -> attribute).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum AttributeSource {
    Attribute(String),
    Table(BTreeMap<String, String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Posix {
    Json(String),
    Ids {
        uid: String,
        gid: String,
        secondary: Option<String>,
    },
}

/// The validated mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Mapping {
    single: Vec<(&'static str, String)>,
    public_keys: String,
    posix: Option<Posix>,
    session_tags: Vec<(String, String)>,
}

fn check_attribute(at: &str, name: &str) -> Result<String, ProviderConfigError> {
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';'));
    if !valid {
        return Err(ProviderConfigError(format!(
            "{at}: {name:?} is not an attribute name (letters, digits, '-', an OID)"
        )));
    }
    Ok(name.to_owned())
}

fn table_error(at: &str) -> ProviderConfigError {
    ProviderConfigError(format!(
        "{at}: must be the name of a directory attribute, not a table"
    ))
}

impl Mapping {
    pub(super) fn new(
        attributes: &BTreeMap<String, AttributeSource>,
    ) -> Result<Mapping, ProviderConfigError> {
        let mut mapping = Mapping {
            single: Vec::new(),
            public_keys: DEFAULT_PUBLIC_KEYS_ATTRIBUTE.to_owned(),
            posix: None,
            session_tags: Vec::new(),
        };
        for (field, source) in attributes {
            let at = format!("attributes.{field}");
            let Some(known) = FIELDS.iter().find(|f| **f == field.as_str()) else {
                return Err(ProviderConfigError(format!(
                    "attributes: {field:?} is not a response field (one of {})",
                    FIELDS.join(", ")
                )));
            };
            match (*known, source) {
                ("PublicKeys", AttributeSource::Attribute(name)) => {
                    mapping.public_keys = check_attribute(&at, name)?;
                }
                ("SessionTags", AttributeSource::Table(tags)) => {
                    for (tag, name) in tags {
                        if tag.is_empty() || tag.chars().count() > 128 {
                            return Err(ProviderConfigError(format!(
                                "{at}: tag keys must be 1 to 128 characters"
                            )));
                        }
                        let name = check_attribute(&format!("{at}.{tag}"), name)?;
                        mapping.session_tags.push((tag.clone(), name));
                    }
                }
                ("SessionTags", AttributeSource::Attribute(_)) => {
                    return Err(ProviderConfigError(format!(
                        "{at}: must be a table of tag = \"attribute\" \
                         (SessionTags = {{ department = \"departmentNumber\" }})"
                    )));
                }
                ("PosixProfile", AttributeSource::Attribute(name)) => {
                    mapping.posix = Some(Posix::Json(check_attribute(&at, name)?));
                }
                ("PosixProfile", AttributeSource::Table(ids)) => {
                    for key in ids.keys() {
                        if !matches!(key.as_str(), "Uid" | "Gid" | "SecondaryGids") {
                            return Err(ProviderConfigError(format!(
                                "{at}: unknown key {key:?} (Uid, Gid, SecondaryGids)"
                            )));
                        }
                    }
                    let id = |key: &str| match ids.get(key) {
                        Some(name) => check_attribute(&format!("{at}.{key}"), name),
                        None => Err(ProviderConfigError(format!(
                            "{at}: {key} is required (e.g. {{ Uid = \"uidNumber\", \
                             Gid = \"gidNumber\" }})"
                        ))),
                    };
                    let secondary = match ids.get("SecondaryGids") {
                        Some(name) => Some(check_attribute(&format!("{at}.SecondaryGids"), name)?),
                        None => None,
                    };
                    mapping.posix = Some(Posix::Ids {
                        uid: id("Uid")?,
                        gid: id("Gid")?,
                        secondary,
                    });
                }
                (_, AttributeSource::Table(_)) => return Err(table_error(&at)),
                (known, AttributeSource::Attribute(name)) => {
                    mapping.single.push((known, check_attribute(&at, name)?));
                }
            }
        }
        if !mapping
            .single
            .iter()
            .any(|(field, _)| matches!(*field, "HomeDirectory" | "HomeDirectoryDetails"))
        {
            return Err(ProviderConfigError(
                "attributes: map HomeDirectory (or HomeDirectoryDetails) to a directory \
                 attribute: every login needs a home directory"
                    .to_owned(),
            ));
        }
        Ok(mapping)
    }

    /// The attributes a user search asks for.
    pub(super) fn requested(&self) -> Vec<String> {
        let mut names: Vec<String> = self.single.iter().map(|(_, a)| a.clone()).collect();
        names.push(self.public_keys.clone());
        match &self.posix {
            Some(Posix::Json(name)) => names.push(name.clone()),
            Some(Posix::Ids {
                uid,
                gid,
                secondary,
            }) => {
                names.push(uid.clone());
                names.push(gid.clone());
                names.extend(secondary.clone());
            }
            None => {}
        }
        names.extend(self.session_tags.iter().map(|(_, a)| a.clone()));
        names.sort_by_key(|n| n.to_ascii_lowercase());
        names.dedup_by_key(|n| n.to_ascii_lowercase());
        names
    }

    /// The response object for `entry`, or why it cannot be built.
    pub(super) fn response(&self, entry: &UserEntry) -> Result<Value, String> {
        let mut out = Map::new();
        for (field, attribute) in &self.single {
            if let Some(value) = single(entry, attribute, field)? {
                out.insert((*field).to_owned(), Value::from(value));
            }
        }
        let keys = entry.text_values(&self.public_keys, "PublicKeys")?;
        if !keys.is_empty() {
            out.insert(
                "PublicKeys".to_owned(),
                Value::Array(keys.iter().map(|k| Value::from(k.trim())).collect()),
            );
        }
        match &self.posix {
            None => {}
            Some(Posix::Json(attribute)) => {
                if let Some(text) = single(entry, attribute, "PosixProfile")? {
                    let value: Value = serde_json::from_str(&text).map_err(|e| {
                        format!("attribute {attribute} (PosixProfile) is not valid JSON: {e}")
                    })?;
                    out.insert("PosixProfile".to_owned(), value);
                }
            }
            Some(Posix::Ids {
                uid,
                gid,
                secondary,
            }) => {
                let number = |attribute: &str, text: &str| -> Result<Value, String> {
                    text.trim().parse::<u32>().map(Value::from).map_err(|_| {
                        format!("attribute {attribute} (PosixProfile) is not a number from 0 to 4294967295")
                    })
                };
                let uid_value = single(entry, uid, "PosixProfile.Uid")?;
                let gid_value = single(entry, gid, "PosixProfile.Gid")?;
                let secondary_values = match secondary {
                    Some(attribute) => {
                        entry.text_values(attribute, "PosixProfile.SecondaryGids")?
                    }
                    None => &[],
                };
                if uid_value.is_some() || gid_value.is_some() || !secondary_values.is_empty() {
                    let mut profile = Map::new();
                    if let Some(text) = uid_value {
                        profile.insert("Uid".to_owned(), number(uid, &text)?);
                    }
                    if let Some(text) = gid_value {
                        profile.insert("Gid".to_owned(), number(gid, &text)?);
                    }
                    if let Some(attribute) = secondary {
                        let ids = secondary_values
                            .iter()
                            .map(|text| number(attribute, text))
                            .collect::<Result<Vec<_>, _>>()?;
                        profile.insert("SecondaryGids".to_owned(), Value::Array(ids));
                    }
                    out.insert("PosixProfile".to_owned(), Value::Object(profile));
                }
            }
        }
        if !self.session_tags.is_empty() {
            let mut tags = Map::new();
            for (tag, attribute) in &self.session_tags {
                if let Some(value) = single(entry, attribute, &format!("SessionTags.{tag}"))? {
                    tags.insert(tag.clone(), Value::from(value));
                }
            }
            if !tags.is_empty() {
                out.insert("SessionTags".to_owned(), Value::Object(tags));
            }
        }
        Ok(Value::Object(out))
    }
}

/// The one value of `attribute`, if it has any.
fn single(entry: &UserEntry, attribute: &str, field: &str) -> Result<Option<String>, String> {
    match entry.text_values(attribute, field)? {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(format!(
            "attribute {attribute} ({field}) has {} values; it must have one",
            many.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn table(value: Value) -> BTreeMap<String, AttributeSource> {
        serde_json::from_value(value).unwrap()
    }

    #[track_caller]
    fn check_config(value: Value, expected: Result<(), &str>) {
        match (Mapping::new(&table(value)), expected) {
            (Ok(_), Ok(())) => {}
            (Err(e), Err(part)) => assert!(e.0.contains(part), "{:?} lacks {part:?}", e.0),
            (got, expected) => panic!("got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn mappings_are_validated() {
        check_config(json!({"HomeDirectory": "homeDirectory"}), Ok(()));
        check_config(
            json!({"HomeDirectoryDetails": "wharfHome", "HomeDirectoryType": "wharfHomeType",
                   "SessionTags": {"dept": "departmentNumber"},
                   "PosixProfile": {"Uid": "uidNumber", "Gid": "gidNumber"}}),
            Ok(()),
        );
        check_config(json!({}), Err("attributes: map HomeDirectory"));
        check_config(
            json!({"HomeDirectory": "h", "Homedir": "x"}),
            Err("attributes: \"Homedir\" is not a response field"),
        );
        check_config(
            json!({"HomeDirectory": "h", "SessionTags": "x"}),
            Err("attributes.SessionTags: must be a table"),
        );
        check_config(
            json!({"HomeDirectory": {"a": "b"}}),
            Err("attributes.HomeDirectory: must be the name"),
        );
        check_config(
            json!({"HomeDirectory": "home directory"}),
            Err("attributes.HomeDirectory: \"home directory\" is not an attribute name"),
        );
        check_config(
            json!({"HomeDirectory": "h", "PosixProfile": {"Uid": "uidNumber"}}),
            Err("attributes.PosixProfile: Gid is required"),
        );
        check_config(
            json!({"HomeDirectory": "h", "PosixProfile": {"Uid": "u", "Gid": "g", "X": "y"}}),
            Err("unknown key \"X\""),
        );
        check_config(
            json!({"HomeDirectory": "h", "SessionTags": {"": "x"}}),
            Err("1 to 128"),
        );
    }

    fn entry(attrs: &[(&str, &[&str])]) -> UserEntry {
        UserEntry::new(
            "uid=alice,dc=x".into(),
            attrs
                .iter()
                .map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            Default::default(),
        )
    }

    #[test]
    fn entries_become_responses() {
        let mapping = Mapping::new(&table(json!({
            "HomeDirectory": "homeDirectory", "Role": "employeeType",
            "SessionTags": {"department": "departmentNumber"},
            "PosixProfile": {"Uid": "uidNumber", "Gid": "gidNumber", "SecondaryGids": "wharfGids"}
        })))
        .unwrap();
        assert_eq!(
            mapping.requested(),
            [
                "departmentNumber",
                "employeeType",
                "gidNumber",
                "homeDirectory",
                "sshPublicKey",
                "uidNumber",
                "wharfGids"
            ]
        );
        // Attribute names match whatever case the server returns.
        let alice = entry(&[
            ("homedirectory", &["/default/alice"]),
            ("employeeType", &["readers"]),
            ("departmentNumber", &["42"]),
            ("uidNumber", &["1000"]),
            ("gidNumber", &["100"]),
            ("wharfGids", &["10", "11"]),
            (
                "sshPublicKey",
                &["ssh-ed25519 AAAA one\n", "ssh-ed25519 AAAB two"],
            ),
        ]);
        assert_eq!(
            mapping.response(&alice).unwrap(),
            json!({"HomeDirectory": "/default/alice", "Role": "readers",
                   "SessionTags": {"department": "42"},
                   "PosixProfile": {"Uid": 1000, "Gid": 100, "SecondaryGids": [10, 11]},
                   "PublicKeys": ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAB two"]})
        );
        // Missing attributes leave fields out.
        assert_eq!(
            mapping
                .response(&entry(&[("homeDirectory", &["/default/a"])]))
                .unwrap(),
            json!({"HomeDirectory": "/default/a"})
        );
        let two_homes = entry(&[("homeDirectory", &["/default/a", "/default/b"])]);
        assert!(
            mapping
                .response(&two_homes)
                .unwrap_err()
                .contains("homeDirectory (HomeDirectory) has 2 values")
        );
        let bad_uid = entry(&[("homeDirectory", &["/default/a"]), ("uidNumber", &["-1"])]);
        assert!(
            mapping
                .response(&bad_uid)
                .unwrap_err()
                .contains("uidNumber")
        );
        let json_posix = Mapping::new(&table(json!({
            "HomeDirectory": "homeDirectory", "PosixProfile": "wharfPosix"
        })))
        .unwrap();
        assert_eq!(
            json_posix
                .response(&entry(&[
                    ("homeDirectory", &["/default/a"]),
                    ("wharfPosix", &[r#"{"Uid": 1, "Gid": 2}"#])
                ]))
                .unwrap()["PosixProfile"],
            json!({"Uid": 1, "Gid": 2})
        );
        assert!(
            json_posix
                .response(&entry(&[("wharfPosix", &["{"])]))
                .unwrap_err()
                .contains("not valid JSON")
        );
        let binary = UserEntry::new(
            "uid=a".into(),
            Default::default(),
            [("homeDirectory".to_owned(), vec![vec![0xff]])]
                .into_iter()
                .collect(),
        );
        assert!(mapping.response(&binary).unwrap_err().contains("not UTF-8"));
    }
}
