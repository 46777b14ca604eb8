//! `wharf.toml` as types.
//!
//! Each crate owns the section it uses, as a plain serde struct with
//! `deny_unknown_fields` and the SPEC's defaults (`wharf_storage::config`,
//! `wharf_identity::config`, the front-ends' `config` modules, the binary's
//! `[server]`). This crate holds what they share:
//!
//! * [`Document`]: the file read into a TOML tree with `WHARF__SECTION__KEY`
//!   environment overrides applied, and the directory relative paths are
//!   relative to;
//! * [`section`]: one section into its type, recording **every** problem with
//!   its dotted key path (`server.idle_timeout: "soon" is not a duration`),
//!   not just the first;
//! * [`Tagged`] and [`tagged!`]: sections whose keys depend on a tag
//!   (`[storage.NAME] kind = "s3"`, `[identity_provider] type = "ldap"`),
//!   registered one line per variant;
//! * [`values`]: the value types of the file (durations, sizes, port ranges,
//!   addresses, CIDRs, paths relative to the file) as serde helpers, so that
//!   each value is parsed once, when the file is read.
//!
//! Semantic checks that need several keys (a part size within S3's limits,
//! two keys that go together) are each section's own `validate`, run by the
//! binary after every section has been read.

mod document;
mod problems;
mod tagged;
pub mod values;

#[cfg(test)]
mod tests;

pub use document::Document;
pub use problems::{Problems, section};
pub use tagged::{Tagged, field_names, tagged_section};

/// `path` does not exist; can it be created (is its nearest existing
/// ancestor a directory)?
pub fn creatable(path: &std::path::Path) -> Result<(), String> {
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            return Ok(());
        }
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "cannot create {}: {} is not a directory",
                    path.display(),
                    ancestor.display()
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
    }
    Ok(())
}

// For the `tagged!` macro.
#[doc(hidden)]
pub use toml;
