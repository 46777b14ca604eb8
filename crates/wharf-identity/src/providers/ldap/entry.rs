//! Directory entries as the provider reads them.

use std::collections::{BTreeSet, HashMap};

use ldap3::{ResultEntry, SearchEntry};

use super::Failure;

/// A directory entry: its DN and its attributes, names lower-cased.
#[derive(Debug, Clone)]
pub(super) struct UserEntry {
    pub(super) dn: String,
    text: HashMap<String, Vec<String>>,
    binary: BTreeSet<String>,
}

impl UserEntry {
    pub(super) fn new(
        dn: String,
        attrs: HashMap<String, Vec<String>>,
        binary: HashMap<String, Vec<Vec<u8>>>,
    ) -> UserEntry {
        UserEntry {
            dn,
            text: attrs
                .into_iter()
                .map(|(name, values)| (name.to_ascii_lowercase(), values))
                .collect(),
            binary: binary
                .into_keys()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
        }
    }

    /// The UTF-8 values of an attribute (none when absent).
    pub(super) fn values(&self, name: &str) -> &[String] {
        self.text
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The values of an attribute mapped to `field`; an error when some
    /// are not UTF-8 text.
    pub(super) fn text_values(&self, name: &str, field: &str) -> Result<&[String], String> {
        if self.binary.contains(&name.to_ascii_lowercase()) {
            return Err(format!(
                "attribute {name} ({field}) holds a value that is not UTF-8 text"
            ));
        }
        Ok(self.values(name))
    }
}

/// Parses search result entries; a malformed one is a directory failure,
/// not a panic.
pub(super) fn parse_entries(entries: Vec<ResultEntry>) -> Result<Vec<UserEntry>, Failure> {
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SearchEntry::construct(entry)
        }))
        .map_err(|_| Failure::directory("the LDAP directory sent a malformed entry".to_owned()))?;
        out.push(UserEntry::new(parsed.dn, parsed.attrs, parsed.bin_attrs));
    }
    Ok(out)
}
