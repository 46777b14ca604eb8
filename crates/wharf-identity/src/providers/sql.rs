//! `sql`: a configured query against PostgreSQL or SQLite returns the user
//! record, as an existing user table holds it.
//!
//! * `query` gets `$1` = the username and returns at most one row whose
//!   columns are named like the response fields (`Role`, `HomeDirectory`,
//!   `HomeDirectoryType`, `HomeDirectoryDetails`, `Policy`, `PublicKeys`,
//!   `PosixProfile`, `SessionTags`; matched without regard to case, since
//!   PostgreSQL folds unquoted aliases to lower case). Text, JSON/JSONB,
//!   integer and (PostgreSQL) text-array columns are read; NULL or empty
//!   text means absent. `PublicKeys` may be a JSON array, a text array, or
//!   text with one authorized_keys line per line. Other columns are not
//!   part of the response: they are named (never shown) in a warning. No
//!   row denies; more than one row denies.
//! * Password logins: `password_hash_column` names the column holding the
//!   stored hash (scheme by prefix, [`crate::HashScheme`]), checked in the
//!   bounded [`HashQueue`]. Or `password_salt` (a migrated table keyed by a
//!   salted digest): `$2` = lowercase hex(sha256(salt + password +
//!   username)), and a row found is a match. With neither, password logins
//!   are refused (a key-only provider). An empty password is refused
//!   before anything is asked.
//! * Key logins: no password is involved; the row's `PublicKeys` must hold
//!   the client's key (checked by [`crate::authenticate`]). With
//!   `password_salt`, `$2` is NULL for a key login: a query written
//!   `... AND ($2 IS NULL OR digest = $2)` lets those users log in with
//!   their keys too, a plain `digest = $2` makes them password-only.
//!
//! The hash, the salt and the digest never reach a reason, a log line or
//! `Debug` output (database errors have the digest redacted before they
//! are quoted).
//!
//! Connections: [`SqlProvider::new`] does no I/O; connections are opened
//! on demand, at most [`MAX_CONNECTIONS`] at once, and kept idle for reuse
//! (up to [`IDLE_LIMIT`]). Every database step of a login (waiting for a
//! connection slot, connecting, the query) shares one deadline, `timeout`:
//! past it the connection in use is dropped (so a hanging server costs no
//! slot beyond the deadline) and the login denied. PostgreSQL also gets
//! `statement_timeout` = `timeout`, so the server gives up on its side too.
//! A reused connection that fails (the server restarted) is replaced once
//! by a fresh one, so logins recover by themselves when the database is
//! back. sqlx's own pool is not used here: a connection it releases is
//! pinged without a deadline, and a server that hangs would keep that
//! connection, and its slot, until TCP gives up.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::TryStreamExt as _;
use serde_json::{Map, Value};
use sha2::Digest as _;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{
    AssertSqlSafe, Column as _, ConnectOptions as _, Row as _, TypeInfo as _, ValueRef as _,
};
use tokio::sync::Semaphore;
use tokio::time::timeout_at;

use super::{BACKSTOP_GRACE, ProviderConfigError, check_timeout};
use crate::database::{self, Accept, Target};
use crate::hashing::{HashQueue, Verdict};
use crate::password::{HashScheme, dummy_hash};
use crate::service_managed::BUSY;
use crate::{Answer, Credential, IdentityProvider, LoginRequest};

/// The most connections one provider opens at once.
pub const MAX_CONNECTIONS: usize = 8;
/// How long an unused connection is kept for the next login.
pub const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// The phases of a login's database work.
const WAITING: u8 = 0;
const CONNECTING: u8 = 1;
const QUERYING: u8 = 2;

// The response fields a column may fill.
use crate::response::RESPONSE_FIELDS as FIELDS;

/// `[identity_provider]` with `type = "sql"`: the keys of SPEC section 2
/// that only this provider reads (the common `timeout` is passed to
/// [`SqlProvider::new`]; `type` and `cache_ttl` belong to the caller).
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (also `postgresql://`,
    /// with sqlx's query parameters such as `sslmode`) or `sqlite://PATH`.
    #[serde(
        default,
        deserialize_with = "wharf_config::values::database::deserialize"
    )]
    pub database: String,
    /// The user record query: `$1` = username (and `$2` = the salted
    /// digest with `password_salt`).
    #[serde(default)]
    pub query: String,
    /// The column holding the stored password hash; "" = none.
    #[serde(default)]
    pub password_hash_column: String,
    /// The salt of a salted-digest table; "" = none. A secret.
    #[serde(default)]
    pub password_salt: String,
}

// By hand: the URL may carry the database password, and the salt is a secret.
impl fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlConfig")
            .field("database", &database::redacted(&self.database))
            .field("query", &self.query)
            .field("password_hash_column", &self.password_hash_column)
            .field("password_salt", &secret_shown(&self.password_salt))
            .finish()
    }
}

fn secret_shown(secret: &str) -> &'static str {
    if secret.is_empty() { "" } else { "***" }
}

/// How password logins are checked.
#[derive(Clone, PartialEq, Eq)]
enum Passwords {
    /// Neither setting: password logins are refused.
    Refused,
    /// The stored hash is in this column.
    HashColumn(String),
    /// `$2` = hex(sha256(salt + password + username)); a row = a match.
    Salted(String),
}

/// The `sql` identity provider.
pub struct SqlProvider {
    /// The database as reasons and `Debug` show it.
    shown: String,
    /// Shared with every execution (sqlx takes it by value).
    query: Arc<str>,
    passwords: Passwords,
    timeout: Duration,
    connections: Connections,
    hashing: Arc<HashQueue>,
}

impl fmt::Debug for SqlProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let passwords = match &self.passwords {
            Passwords::Refused => "refused".to_owned(),
            Passwords::HashColumn(column) => format!("hash in column {column:?}"),
            Passwords::Salted(_) => "salted digest (salt ***)".to_owned(),
        };
        f.debug_struct("SqlProvider")
            .field("database", &self.shown)
            .field("query", &self.query)
            .field("passwords", &passwords)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The `$N` parameters a query uses, outside string literals, quoted
/// identifiers and comments.
fn placeholders(query: &str) -> BTreeSet<u64> {
    let mut found = BTreeSet::new();
    let chars: Vec<char> = query.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            quote @ ('\'' | '"') => {
                i += 1;
                while i < chars.len() && chars[i] != quote {
                    i += 1;
                }
                i += 1;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
            '$' => {
                let digits: String = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                i += 1 + digits.len();
                if let Ok(n) = digits.parse() {
                    found.insert(n);
                }
            }
            _ => i += 1,
        }
    }
    found
}

fn invalid(message: impl Into<String>) -> ProviderConfigError {
    ProviderConfigError(message.into())
}

impl SqlProvider {
    /// Validates the configuration; no I/O (the first login connects).
    /// Messages start with the key they are about (`database: ...`,
    /// `query: ...`); the caller prefixes `identity_provider.`.
    pub fn new(config: SqlConfig, timeout: Duration) -> Result<SqlProvider, ProviderConfigError> {
        check_timeout(timeout)?;
        if config.database.trim().is_empty() {
            return Err(invalid(
                "database: required for type \"sql\": postgres://USER:PASSWORD@HOST/DATABASE \
                 or sqlite://PATH",
            ));
        }
        let target = database::parse(&config.database, Accept::Urls)
            .map_err(|e| invalid(format!("database: {e}")))?;
        let hash_column = config.password_hash_column.trim();
        let passwords = match (hash_column.is_empty(), config.password_salt.is_empty()) {
            (true, true) => Passwords::Refused,
            (false, true) => {
                if FIELDS.iter().any(|f| f.eq_ignore_ascii_case(hash_column)) {
                    return Err(invalid(format!(
                        "password_hash_column: {hash_column:?} is a response field; name the \
                         column that holds the password hash"
                    )));
                }
                Passwords::HashColumn(hash_column.to_owned())
            }
            (true, false) => Passwords::Salted(config.password_salt.clone()),
            (false, false) => {
                return Err(invalid(
                    "password_salt: cannot be combined with password_hash_column (a table \
                     holds either password hashes or salted digests)",
                ));
            }
        };
        let query = config.query.trim();
        if query.is_empty() {
            return Err(invalid(
                "query: required for type \"sql\": a SELECT whose columns are named like the \
                 response fields, with $1 for the username",
            ));
        }
        let used = placeholders(query);
        let salted = matches!(passwords, Passwords::Salted(_));
        if !used.contains(&1) {
            return Err(invalid("query: must use $1 (the username)"));
        }
        if salted && !used.contains(&2) {
            return Err(invalid(
                "query: must use $2 (the salted digest of the password) when password_salt is \
                 set",
            ));
        }
        if let Some(n) = used.iter().find(|&&n| n > 2 || (n == 2 && !salted)) {
            return Err(invalid(format!(
                "query: uses ${n}, but only $1 (the username){} is given",
                if salted {
                    " and $2 (the salted digest)"
                } else {
                    ", and $2 with password_salt,"
                }
            )));
        }
        let target = match target {
            Target::Postgres(options) => {
                let millis = timeout.as_millis().max(1).to_string();
                Target::Postgres(Box::new(
                    database::quiet_postgres(*options)
                        .options([("statement_timeout", millis.as_str())]),
                ))
            }
            Target::Sqlite(options) => Target::Sqlite(Box::new(
                options
                    .busy_timeout(timeout)
                    .create_if_missing(false)
                    .disable_statement_logging(),
            )),
        };
        Ok(SqlProvider {
            shown: database::redacted(&config.database),
            query: Arc::from(query),
            passwords,
            timeout,
            connections: Connections::new(target),
            hashing: HashQueue::for_this_machine(timeout / 2),
        })
    }

    /// Asks the database, all of it within `deadline`.
    async fn rows(
        &self,
        username: &str,
        digest: Option<&str>,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Record>, Answer> {
        let kind = self.kind();
        let shown = &self.shown;
        let salted = matches!(self.passwords, Passwords::Salted(_));
        let args = Args {
            username,
            digest: salted.then_some(digest),
        };
        let redact = |text: String| match digest {
            Some(digest) => text.replace(digest, "***"),
            None => text,
        };
        // Where a login that runs out of time was, for its reason.
        let phase = AtomicU8::new(WAITING);
        let outcome = timeout_at(deadline, async {
            let Ok(_permit) = self.connections.permits.acquire().await else {
                return Err(Failure::Connect("the provider is shutting down".to_owned()));
            };
            phase.store(QUERYING, Ordering::Relaxed);
            if let Some(mut conn) = self.connections.take_idle() {
                match conn.fetch(&self.query, &args).await {
                    Ok((rows, complete)) => {
                        if complete {
                            self.connections.put_idle(conn);
                        }
                        return Ok(rows);
                    }
                    // A connection from before a restart: try a new one.
                    Err(_) => drop(conn),
                }
            }
            phase.store(CONNECTING, Ordering::Relaxed);
            let mut conn = self
                .connections
                .connect()
                .await
                .map_err(|e| Failure::Connect(e.to_string()))?;
            phase.store(QUERYING, Ordering::Relaxed);
            let (rows, complete) = conn
                .fetch(&self.query, &args)
                .await
                .map_err(|e| Failure::Query(e.to_string()))?;
            if complete {
                self.connections.put_idle(conn);
            }
            Ok(rows)
        })
        .await;
        match outcome {
            Ok(Ok(rows)) => Ok(rows),
            Err(_elapsed) => {
                let doing = match phase.load(Ordering::Relaxed) {
                    WAITING => format!(
                        "while waiting for a free connection (all {MAX_CONNECTIONS} in use)"
                    ),
                    CONNECTING => "while connecting".to_owned(),
                    _ => "to the query".to_owned(),
                };
                Err(Answer::denied(
                    504,
                    format!(
                        "the {kind} identity provider's database {shown} did not answer within \
                         {:?} ({doing})",
                        self.timeout
                    ),
                ))
            }
            Ok(Err(Failure::Connect(error))) => Err(Answer::denied(
                503,
                format!(
                    "cannot connect to the {kind} identity provider's database {shown}: {}",
                    redact(error)
                ),
            )),
            Ok(Err(Failure::Query(error))) => Err(Answer::denied(
                502,
                format!(
                    "the {kind} identity provider's query failed on {shown}: {}",
                    redact(error)
                ),
            )),
        }
    }

    /// A password check against the dummy hash, so that a login that has
    /// no hash to check takes the time of one that has. `Some` = busy.
    async fn equalise(&self, request: &LoginRequest) -> Option<Answer> {
        if let Credential::Password(password) = &request.credential {
            let verdict = self
                .hashing
                .verify(request.source_ip, password.expose(), dummy_hash())
                .await;
            if verdict == Verdict::Busy {
                return Some(busy());
            }
        }
        None
    }
}

/// What a busy verification queue answers: the password was not checked,
/// which is not a wrong password ([`BUSY`] does not count towards a ban).
fn busy() -> Answer {
    Answer::denied(
        BUSY,
        "password verification is saturated (too many concurrent password checks)",
    )
}

/// lowercase hex(sha256(salt + password + username)).
fn salted_digest(salt: &str, password: &str, username: &str) -> String {
    let digest = sha2::Sha256::new()
        .chain_update(salt.as_bytes())
        .chain_update(password.as_bytes())
        .chain_update(username.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl IdentityProvider for SqlProvider {
    fn kind(&self) -> &'static str {
        "sql"
    }

    fn timeout(&self) -> Duration {
        self.timeout + BACKSTOP_GRACE
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let kind = self.kind();
        let username = request.username.as_str();
        let password = match &request.credential {
            Credential::Password(password) => {
                if password.expose().is_empty() {
                    return Answer::denied(401, "empty password");
                }
                if self.passwords == Passwords::Refused {
                    return Answer::denied(
                        401,
                        format!(
                            "password logins are off for the {kind} identity provider (neither \
                             password_hash_column nor password_salt is set)"
                        ),
                    );
                }
                Some(password.expose())
            }
            Credential::PublicKey(_) => None,
        };
        let digest = match (&self.passwords, password) {
            (Passwords::Salted(salt), Some(password)) => {
                Some(salted_digest(salt, password, username))
            }
            _ => None,
        };
        let mut rows = match self.rows(username, digest.as_deref(), deadline).await {
            Ok(rows) => rows,
            Err(answer) => return answer,
        };
        if rows.len() > 1 {
            return Answer::denied(
                500,
                format!(
                    "the {kind} identity provider's query returned more than one row for user \
                     {username:?} (denied: the query must identify one user)"
                ),
            );
        }
        let Some(row) = rows.pop() else {
            if digest.is_some() {
                return Answer::denied(
                    401,
                    format!(
                        "no row for user {username:?} with the salted digest of this password \
                         (wrong password or no such user)"
                    ),
                );
            }
            if matches!(self.passwords, Passwords::HashColumn(_))
                && let Some(busy) = self.equalise(request).await
            {
                return busy;
            }
            return Answer::denied(
                404,
                format!("no row for user {username:?} in the {kind} identity provider's database"),
            );
        };
        let hash_column = match &self.passwords {
            Passwords::HashColumn(column) => Some(column.as_str()),
            _ => None,
        };
        let Built {
            response,
            hash,
            unknown,
        } = match build_response(row, hash_column) {
            Ok(built) => built,
            Err(reason) => {
                return Answer::denied(
                    502,
                    format!("the {kind} identity provider's row for {username:?}: {reason}"),
                );
            }
        };
        if let (Some(column), Some(password)) = (hash_column, password) {
            let hash = match hash {
                HashCell::Missing => {
                    return Answer::denied(
                        500,
                        format!(
                            "the {kind} identity provider's query returns no column {column:?} \
                             (password_hash_column)"
                        ),
                    );
                }
                HashCell::NotText(type_name) => {
                    return Answer::denied(
                        500,
                        format!(
                            "the {kind} identity provider's password hash column {column:?} is \
                             of type {type_name}, not text"
                        ),
                    );
                }
                HashCell::Absent => {
                    if let Some(busy) = self.equalise(request).await {
                        return busy;
                    }
                    return Answer::denied(
                        401,
                        format!(
                            "user {username:?} has no password (its {column} is NULL or empty)"
                        ),
                    );
                }
                HashCell::Text(hash) => hash,
            };
            if let Err(problem) = HashScheme::of(&hash) {
                if let Some(busy) = self.equalise(request).await {
                    return busy;
                }
                return Answer::denied(500, format!("user {username:?}: {problem}"));
            }
            match self
                .hashing
                .verify(request.source_ip, password, &hash)
                .await
            {
                Verdict::Busy => return busy(),
                Verdict::Mismatch => return Answer::denied(401, "wrong password"),
                Verdict::Match => {}
            }
        }
        if let Some(warning) = unknown_warning(kind, &unknown) {
            tracing::warn!("{warning}");
        }
        Answer {
            status_code: 200,
            message: format!("authenticated by the {kind} identity provider"),
            response: Some(Value::Object(response)),
        }
    }
}

mod rows;

use rows::*;

#[cfg(test)]
mod tests;
