//! The `database` settings (`identity_provider.database`): PostgreSQL or
//! SQLite, parsed without any I/O, and shown without credentials.

use std::fmt;
use std::path::Path;
use std::path::PathBuf;
use std::str::FromStr;

use reqwest::Url;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// A parsed `database` value.
#[derive(Clone)]
pub(crate) enum Target {
    Postgres(Box<PgConnectOptions>),
    Sqlite(Box<SqliteConnectOptions>),
}

// By hand: the connect options hold the database password.
impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Postgres(_) => f.write_str("Postgres(..)"),
            Target::Sqlite(options) => f
                .debug_tuple("Sqlite")
                .field(&options.get_filename())
                .finish(),
        }
    }
}

/// The kinds of value [`parse`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// `postgres://...`, `postgresql://...` or `sqlite://...`.
    Urls,
    /// Those, or a plain path to an SQLite file.
    UrlsOrPath,
}

/// Parses a `database` value. Errors are for the operator, never show a
/// password, and do not repeat the key name (the caller prefixes it).
pub(crate) fn parse(value: &str, accept: Accept) -> Result<Target, String> {
    let value = value.trim();
    let shown = redacted(value);
    if value.is_empty() {
        return Err("is empty: postgres://USER:PASSWORD@HOST/DATABASE or sqlite://PATH".to_owned());
    }
    let lower = value.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(value)
            .map_err(|e| format!("{shown:?} is not a PostgreSQL URL: {e}"))?;
        return Ok(Target::Postgres(Box::new(options)));
    }
    if lower.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(value)
            .map_err(|e| format!("{shown:?} is not an SQLite URL: {e}"))?;
        if options.get_filename().as_os_str().is_empty() {
            return Err(format!("{shown:?} names no file: sqlite://PATH"));
        }
        return Ok(Target::Sqlite(Box::new(options)));
    }
    match accept {
        Accept::UrlsOrPath if !value.contains("://") => Ok(Target::Sqlite(Box::new(
            SqliteConnectOptions::new().filename(value),
        ))),
        Accept::UrlsOrPath => Err(format!(
            "{shown:?} must be a path to an SQLite file, sqlite://PATH or postgres://..."
        )),
        Accept::Urls => Err(format!(
            "{shown:?} must start with postgres://, postgresql:// or sqlite://"
        )),
    }
}

impl Target {
    /// The SQLite file, if this is SQLite.
    pub(crate) fn sqlite_file(&self) -> Option<PathBuf> {
        match self {
            Target::Sqlite(options) => Some(options.get_filename().to_path_buf()),
            Target::Postgres(_) => None,
        }
    }
}

/// The SQLite file a `database` value names, if it names one.
pub(crate) fn sqlite_file(value: &str) -> Option<PathBuf> {
    parse(value, Accept::UrlsOrPath)
        .ok()
        .and_then(|target| target.sqlite_file())
}

/// SQLite options for a file at `path` that wharf owns (the service-managed
/// user store): created when missing, WAL, foreign keys on.
pub(crate) fn owned_sqlite(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(std::time::Duration::from_secs(5))
}

/// Quiet connect options: a login's query is not worth a log line.
pub(crate) fn quiet_postgres(options: PgConnectOptions) -> PgConnectOptions {
    options
        .application_name("wharf")
        .disable_statement_logging()
}

/// A `database` value as logs, errors and `Debug` show it: a URL without
/// its password (the user name stays, it helps and is no secret), nor any
/// `password`-like query parameter; a path as it is.
pub(crate) fn redacted(value: &str) -> String {
    let value = value.trim();
    if !value.contains("://") {
        return value.to_owned();
    }
    let Ok(mut url) = Url::parse(value) else {
        // Unparsable, but it might still hold a password: the user info
        // goes whole, and so does a query that might name one.
        let (scheme, rest) = value.split_once("://").unwrap_or(("", value));
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let user = if authority.contains('@') { "***@" } else { "" };
        let path = match path.split_once('?') {
            Some((path, _)) => format!("{path}?***"),
            None => path.to_owned(),
        };
        return format!("{scheme}://{user}{host}{path}");
    };
    let secret_param = |key: &str| key.to_ascii_lowercase().contains("password");
    let has_secret_param = url.query_pairs().any(|(k, _)| secret_param(&k));
    if url.password().is_none() && !has_secret_param {
        // Nothing to hide: shown as written.
        return value.to_owned();
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if has_secret_param {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let shown = if secret_param(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), shown)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Creates the directory an SQLite file goes in.
pub(crate) fn create_parent(path: &Path) -> Result<(), String> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_shown_without_passwords() {
        for (value, shown) in [
            (
                "postgres://wharf:s3cret@db.example:5432/users",
                "postgres://wharf:***@db.example:5432/users",
            ),
            (
                "postgresql://wharf@db/users?password=s3cret&sslmode=require",
                "postgresql://wharf@db/users?password=***&sslmode=require",
            ),
            ("postgres://db/users", "postgres://db/users"),
            (
                "sqlite:///var/lib/wharf/users.db",
                "sqlite:///var/lib/wharf/users.db",
            ),
            ("wharf-data/users.db", "wharf-data/users.db"),
        ] {
            assert_eq!(redacted(value), shown);
        }
        assert_eq!(
            redacted("postgres://u:s3cret@[::1/x"),
            "postgres://***@[::1/x"
        );
        assert_eq!(
            redacted("postgres://u:s3cret@db:port/x?password=s3cret"),
            "postgres://***@db:port/x?***"
        );
    }

    #[test]
    fn values_parse_without_io() {
        assert!(matches!(
            parse("postgres://u:p@127.0.0.1:1/db", Accept::Urls),
            Ok(Target::Postgres(_))
        ));
        assert!(matches!(
            parse("POSTGRESQL://u@localhost/db", Accept::Urls),
            Ok(Target::Postgres(_))
        ));
        let sqlite = parse("sqlite:///nonexistent/dir/users.db", Accept::Urls).unwrap();
        assert_eq!(
            sqlite.sqlite_file().unwrap(),
            PathBuf::from("/nonexistent/dir/users.db")
        );
        let plain = parse("data/users.db", Accept::UrlsOrPath).unwrap();
        assert_eq!(plain.sqlite_file().unwrap(), PathBuf::from("data/users.db"));
        for (value, accept, part) in [
            ("", Accept::Urls, "is empty"),
            ("data/users.db", Accept::Urls, "must start with postgres://"),
            (
                "mysql://u:s3cret@db/x",
                Accept::UrlsOrPath,
                "must be a path",
            ),
            (
                "postgres://u:s3cret@db:notaport/x",
                Accept::Urls,
                "not a PostgreSQL URL",
            ),
        ] {
            let error = parse(value, accept).unwrap_err();
            assert!(error.contains(part), "{value}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let debug = format!(
            "{:?}",
            parse("postgres://u:s3cret@db/x", Accept::Urls).unwrap()
        );
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
