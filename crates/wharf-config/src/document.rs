//! The configuration file as a TOML tree, with environment overrides.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::Problems;

/// A configuration file read into a TOML tree, `WHARF__...` overrides
/// applied.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from; `None` for text that is built in.
    pub file: Option<PathBuf>,
    /// What relative paths in it are relative to: the file's directory.
    pub base: PathBuf,
    tree: Table,
}

thread_local! {
    /// The directory relative paths resolve against while a document's
    /// sections are read ([`Document::read_sections`]).
    static BASE: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// `path` made absolute against the document being read (see
/// [`Document::read_sections`]); unchanged outside one.
pub(crate) fn resolve(path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return path;
    }
    BASE.with(|base| match &*base.borrow() {
        Some(base) => base.join(&path),
        None => path,
    })
}

impl Document {
    /// Reads `file`. A file that cannot be read or is not TOML is one
    /// problem.
    pub fn read(file: &Path, env: &[(String, String)]) -> Result<Document, Problems> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Problems::from(format!("cannot read {}: {e}", file.display())))?;
        let base = file
            .parent()
            .map(Path::to_owned)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Document::parse(&text, Some(file), base, env)
    }

    /// Parses `text` (from `file`, or built in when `None`), then applies the
    /// overrides in `env`.
    pub fn parse(
        text: &str,
        file: Option<&Path>,
        base: PathBuf,
        env: &[(String, String)],
    ) -> Result<Document, Problems> {
        let tree: Table = text.parse().map_err(|e: toml::de::Error| {
            let name = file
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "embedded default".into());
            Problems::from(format!("{name}: {}", e.to_string().trim()))
        })?;
        let mut document = Document {
            file: file.map(Path::to_owned),
            base,
            tree,
        };
        let mut problems = Problems::default();
        document.apply_env(env, &mut problems);
        problems.into_result(document)
    }

    /// Takes a top-level key out of the tree (`None` when absent).
    pub fn take(&mut self, key: &str) -> Option<Value> {
        self.tree.remove(key)
    }

    /// What is left of the tree, as a value.
    pub fn into_value(self) -> Value {
        Value::Table(self.tree)
    }

    /// Runs `read` with relative paths resolving against this document's
    /// directory ([`crate::values::path`] and friends).
    pub fn read_sections<R>(&self, read: impl FnOnce() -> R) -> R {
        struct Reset(Option<PathBuf>);
        impl Drop for Reset {
            fn drop(&mut self) {
                let previous = self.0.take();
                BASE.with(|base| *base.borrow_mut() = previous);
            }
        }
        let previous = BASE.with(|base| base.borrow_mut().replace(self.base.clone()));
        let _reset = Reset(previous);
        read()
    }

    /// Applies `WHARF__SECTION__KEY=value` overrides. A value is read as TOML
    /// when it parses as one (`5`, `true`, `["a"]`), else as a string. Names
    /// match existing keys case-insensitively; new keys are lowercased.
    fn apply_env(&mut self, env: &[(String, String)], problems: &mut Problems) {
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("WHARF__") else {
                continue;
            };
            let parts: Vec<&str> = rest.split("__").collect();
            if parts.iter().any(|p| p.is_empty()) {
                problems.push(name, "malformed override (WHARF__SECTION__KEY)");
                continue;
            }
            let parsed = format!("v = {value}")
                .parse::<Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| Value::String(value.clone()));
            let mut table = &mut self.tree;
            for (i, part) in parts.iter().enumerate() {
                let key = table
                    .keys()
                    .find(|k| k.eq_ignore_ascii_case(part))
                    .cloned()
                    .unwrap_or_else(|| part.to_ascii_lowercase());
                if i == parts.len() - 1 {
                    table.insert(key, parsed.clone());
                    break;
                }
                let entry = table
                    .entry(key.clone())
                    .or_insert_with(|| Value::Table(Table::new()));
                match entry {
                    Value::Table(inner) => table = inner,
                    _ => {
                        problems.push(name, format!("{key} is not a section"));
                        break;
                    }
                }
            }
        }
    }
}
