//! The home directory of a response: `HomeDirectoryType` PATH with a
//! `HomeDirectory`, or LOGICAL with its `HomeDirectoryDetails` mappings;
//! every path normalised (`..` refused) and every store one of the
//! configured ones.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{json_or_string, string_field};
use crate::{Home, LogicalEntry};

/// The most LOGICAL entries one response may hold.
const MAX_ENTRIES: usize = 10_000;

/// The session's home from the response object's home fields.
pub(super) fn home(
    object: &serde_json::Map<String, Value>,
    username: &str,
    stores: &BTreeSet<String>,
) -> Result<Home, String> {
    let home_type = string_field(object, "HomeDirectoryType")?.unwrap_or("PATH");
    let home_directory = string_field(object, "HomeDirectory")?;
    let details = object.get("HomeDirectoryDetails").filter(|v| !v.is_null());
    if home_directory.is_some() && details.is_some() {
        return Err("HomeDirectory and HomeDirectoryDetails are exclusive".to_owned());
    }
    Ok(match home_type {
        "PATH" => {
            if details.is_some() {
                return Err("HomeDirectoryDetails needs HomeDirectoryType LOGICAL".to_owned());
            }
            let raw = home_directory.ok_or_else(|| {
                "the response has no HomeDirectory (or LOGICAL HomeDirectoryDetails)".to_owned()
            })?;
            let (store, prefix) = store_and_prefix("HomeDirectory", raw, username, stores)?;
            Home::Path { store, prefix }
        }
        "LOGICAL" => {
            let details = details
                .ok_or_else(|| "HomeDirectoryType LOGICAL needs HomeDirectoryDetails".to_owned())?;
            Home::Logical(logical_entries(details, username, stores)?)
        }
        other => {
            return Err(format!(
                "HomeDirectoryType must be PATH or LOGICAL, got {other:?}"
            ));
        }
    })
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
