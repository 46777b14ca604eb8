//! Service-managed users: kept by wharf in SQLite (one node) or PostgreSQL
//! (several nodes sharing one database), managed with `wharf user`,
//! answered in the same response shape as any provider.
//!
//! Both databases are served by one code path: runtime queries written in
//! the SQL both understand (`$N` parameters, `ON CONFLICT DO NOTHING`), run
//! through `with_pool!` on whichever pool is open, and one set of
//! migrations (`migrations/users`). Every login reads the database and
//! nothing is cached here, so a change made by any process sharing the
//! database takes effect at the next login, without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::database::{self, Accept, Target};
use crate::hashing::{HashQueue, Verdict};
use crate::password::dummy_hash;
use crate::{
    Answer, AuthorizedKey, Credential, IdentityProvider, LoginRequest, check_username, fingerprint,
    hash_password,
};

/// A user store error, with a message for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        StoreError(format!("user database: {error}"))
    }
}

type Result<T> = std::result::Result<T, StoreError>;

/// A user as stored, without the password hash.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub username: String,
    pub has_password: bool,
    pub home_directory_type: String,
    pub home_directory: Option<String>,
    /// The LOGICAL entries, as `[{"Entry", "Target", "Type"?}]`.
    pub home_directory_details: Option<Value>,
    pub role: Option<String>,
    pub policy: Option<Value>,
    pub session_tags: BTreeMap<String, String>,
    /// `(fingerprint, authorized_keys line: options and key)`.
    pub public_keys: Vec<(String, String)>,
    pub created_at: String,
}

impl UserRecord {
    /// The identity provider response for this user.
    pub fn response(&self) -> Value {
        let mut response = serde_json::Map::new();
        response.insert("HomeDirectoryType".into(), json!(self.home_directory_type));
        if let Some(home) = &self.home_directory {
            response.insert("HomeDirectory".into(), json!(home));
        }
        if let Some(details) = &self.home_directory_details {
            response.insert("HomeDirectoryDetails".into(), details.clone());
        }
        if let Some(role) = &self.role {
            response.insert("Role".into(), json!(role));
        }
        if let Some(policy) = &self.policy {
            response.insert("Policy".into(), policy.clone());
        }
        if !self.session_tags.is_empty() {
            response.insert("SessionTags".into(), json!(self.session_tags));
        }
        if !self.public_keys.is_empty() {
            let keys: Vec<&str> = self.public_keys.iter().map(|(_, k)| k.as_str()).collect();
            response.insert("PublicKeys".into(), json!(keys));
        }
        Value::Object(response)
    }

    /// What `wharf user show` prints: never a hash.
    pub fn to_json(&self) -> Value {
        json!({
            "UserName": self.username,
            "HasPassword": self.has_password,
            "HomeDirectoryType": self.home_directory_type,
            "HomeDirectory": self.home_directory,
            "HomeDirectoryDetails": self.home_directory_details,
            "Role": self.role,
            "Policy": self.policy,
            "SessionTags": self.session_tags,
            "SshPublicKeys": self.public_keys.iter().map(|(fp, key)| json!({"Fingerprint": fp, "PublicKey": key})).collect::<Vec<_>>(),
            "CreatedAt": self.created_at,
        })
    }
}

/// A user to add.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub password: Option<crate::Password>,
    pub public_keys: Vec<AuthorizedKey>,
    pub home_directory_type: String,
    pub home_directory: Option<String>,
    pub home_directory_details: Option<Value>,
    pub role: Option<String>,
    pub policy: Option<Value>,
    pub session_tags: BTreeMap<String, String>,
}

/// The open database.
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to whichever pool is open: the body is
/// written once and compiled for both databases.
macro_rules! with_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The most connections one process opens to a PostgreSQL user database.
const POSTGRES_CONNECTIONS: u32 = 8;
/// The most connections to an SQLite user database.
const SQLITE_CONNECTIONS: u32 = 4;
/// How long an operation waits for a connection, or a PostgreSQL server to
/// accept one, before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The table that records applied migrations in PostgreSQL. Not sqlx's
/// default: a shared database (`[cluster] database`) may hold other
/// migrated tables, whose migrator must not see ours as its own. SQLite
/// keeps the default, which existing user databases already have.
const POSTGRES_MIGRATIONS_TABLE: &str = "_wharf_users_migrations";

/// The service-managed user database.
#[derive(Clone)]
pub struct UserStore {
    pool: Pool,
    /// The database as messages show it (no password).
    shown: String,
}

impl fmt::Debug for UserStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

fn now() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// What is stored: the whole authorized_keys line, options included, so
/// that every login sees the restrictions.
fn key_line(key: &AuthorizedKey) -> Result<String> {
    key.to_line().map_err(StoreError)
}

/// A user row as read, before its JSON columns are parsed.
struct StoredUser {
    username: String,
    hash: Option<String>,
    home_directory_type: String,
    home_directory: Option<String>,
    home_directory_details: Option<String>,
    role: Option<String>,
    policy: Option<String>,
    session_tags: String,
    created_at: String,
    /// `(fingerprint, line, added_at)`.
    keys: Vec<(String, String, String)>,
}

async fn hashed(password: &crate::Password) -> Result<String> {
    let password = password.clone();
    tokio::task::spawn_blocking(move || hash_password(password.expose()))
        .await
        .map_err(|e| StoreError(e.to_string()))?
        .map_err(StoreError)
}

impl UserStore {
    /// Checks a `database` value without opening anything (for
    /// `check-config`): `postgres://...`, `postgresql://...`,
    /// `sqlite://PATH` or a plain path to an SQLite file. The message starts
    /// with the key name (`database: ...`).
    pub fn check_database(database: &str) -> Result<()> {
        database::parse(database, Accept::UrlsOrPath)
            .map(drop)
            .map_err(|e| StoreError(format!("database: {e}")))
    }

    /// Opens the user database the configured `database` value names,
    /// creating (SQLite: the file and its directory) and migrating it as
    /// needed: `postgres://...` / `postgresql://...` (the database must
    /// exist; its tables are created), `sqlite://PATH` or a plain path to
    /// an SQLite file. Every operation behaves the same on both.
    pub async fn open(database: &str) -> Result<UserStore> {
        let target = database::parse(database, Accept::UrlsOrPath)
            .map_err(|e| StoreError(format!("database: {e}")))?;
        let shown = database::redacted(database);
        match target {
            Target::Sqlite(options) => Self::open_sqlite_with(*options, shown).await,
            Target::Postgres(options) => {
                let pool = PgPoolOptions::new()
                    .max_connections(POSTGRES_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .idle_timeout(Duration::from_secs(300))
                    .connect_with((*options).application_name("wharf"))
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::PoolTimedOut => StoreError(format!(
                            "cannot open user database {shown}: no connection within \
                             {ACQUIRE_TIMEOUT:?} (is the server running and reachable?)"
                        )),
                        e => StoreError(format!("cannot open user database {shown}: {e}")),
                    })?;
                let mut migrator = sqlx::migrate!("./migrations/users");
                migrator.dangerous_set_table_name(POSTGRES_MIGRATIONS_TABLE);
                migrator.run(&pool).await.map_err(|e| {
                    StoreError(format!("cannot migrate user database {shown}: {e}"))
                })?;
                Ok(UserStore {
                    pool: Pool::Postgres(pool),
                    shown,
                })
            }
        }
    }

    /// Opens (creating and migrating it if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<UserStore> {
        let shown = path.display().to_string();
        Self::open_sqlite_with(SqliteConnectOptions::new().filename(path), shown).await
    }

    async fn open_sqlite_with(options: SqliteConnectOptions, shown: String) -> Result<UserStore> {
        database::create_parent(options.get_filename()).map_err(StoreError)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(SQLITE_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(database::owned_sqlite(options))
            .await
            .map_err(|e| StoreError(format!("cannot open user database {shown}: {e}")))?;
        sqlx::migrate!("./migrations/users")
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("cannot migrate user database: {e}")))?;
        Ok(UserStore {
            pool: Pool::Sqlite(pool),
            shown,
        })
    }

    /// Which database this is: `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    pub async fn count(&self) -> Result<i64> {
        let count = with_pool!(&self.pool, |pool| {
            sqlx::query("SELECT COUNT(*) FROM users")
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>(0)?
        });
        Ok(count)
    }

    /// Adds a user; the name must be free.
    pub async fn add(&self, user: &NewUser) -> Result<()> {
        check_username(&user.username).map_err(|e| StoreError(e.to_string()))?;
        let hash = match &user.password {
            Some(password) => Some(hashed(password).await?),
            None => None,
        };
        let details = user.home_directory_details.as_ref().map(Value::to_string);
        let policy = user.policy.as_ref().map(Value::to_string);
        let tags = json!(user.session_tags).to_string();
        let keys = user
            .public_keys
            .iter()
            .map(|key| Ok((fingerprint(&key.key), key_line(key)?)))
            .collect::<Result<Vec<_>>>()?;
        let created = now();
        let added = with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            // Race-free between processes: the primary key decides.
            let inserted = sqlx::query(
                "INSERT INTO users (username, password_hash, home_directory_type, \
                 home_directory, home_directory_details, role, policy, session_tags, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&user.username)
            .bind(&hash)
            .bind(&user.home_directory_type)
            .bind(&user.home_directory)
            .bind(&details)
            .bind(&user.role)
            .bind(&policy)
            .bind(&tags)
            .bind(&created)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                for (fp, line) in &keys {
                    sqlx::query(
                        "INSERT INTO user_keys (username, fingerprint, public_key, added_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (username, fingerprint) DO NOTHING",
                    )
                    .bind(&user.username)
                    .bind(fp)
                    .bind(line)
                    .bind(&created)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            inserted == 1
        });
        if !added {
            return Err(StoreError(format!(
                "user {:?} already exists",
                user.username
            )));
        }
        Ok(())
    }

    /// All users, by name.
    pub async fn list(&self) -> Result<Vec<UserRecord>> {
        let mut names: Vec<String> = with_pool!(&self.pool, |pool| {
            sqlx::query("SELECT username FROM users")
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| row.try_get::<String, _>(0))
                .collect::<std::result::Result<_, _>>()?
        });
        // Sorted here, not by the database, whose collation may differ.
        names.sort();
        let mut users = Vec::with_capacity(names.len());
        for name in names {
            if let Some(user) = self.get(&name).await? {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// One user, or `None`.
    pub async fn get(&self, username: &str) -> Result<Option<UserRecord>> {
        Ok(self.get_with_hash(username).await?.map(|(user, _)| user))
    }

    async fn read(&self, username: &str) -> Result<Option<StoredUser>> {
        let stored = with_pool!(&self.pool, |pool| {
            let row = sqlx::query(
                "SELECT username, password_hash, home_directory_type, home_directory, \
                 home_directory_details, role, policy, session_tags, created_at \
                 FROM users WHERE username = $1",
            )
            .bind(username)
            .fetch_optional(pool)
            .await?;
            match row {
                None => None,
                Some(row) => {
                    let keys = sqlx::query(
                        "SELECT fingerprint, public_key, added_at FROM user_keys \
                         WHERE username = $1",
                    )
                    .bind(username)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
                    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
                    Some(StoredUser {
                        username: row.try_get("username")?,
                        hash: row.try_get("password_hash")?,
                        home_directory_type: row.try_get("home_directory_type")?,
                        home_directory: row.try_get("home_directory")?,
                        home_directory_details: row.try_get("home_directory_details")?,
                        role: row.try_get("role")?,
                        policy: row.try_get("policy")?,
                        session_tags: row.try_get("session_tags")?,
                        created_at: row.try_get("created_at")?,
                        keys,
                    })
                }
            }
        });
        Ok(stored)
    }

    async fn get_with_hash(&self, username: &str) -> Result<Option<(UserRecord, Option<String>)>> {
        let Some(stored) = self.read(username).await? else {
            return Ok(None);
        };
        let parse = |column: &str, text: Option<String>| -> Result<Option<Value>> {
            text.map(|t| {
                serde_json::from_str(&t).map_err(|e| {
                    StoreError(format!("user {username}: stored {column} is not JSON: {e}"))
                })
            })
            .transpose()
        };
        let session_tags: BTreeMap<String, String> = serde_json::from_str(&stored.session_tags)
            .map_err(|e| StoreError(format!("user {username}: stored tags are not JSON: {e}")))?;
        let mut keys = stored.keys;
        // Oldest first; by fingerprint (bytes, whatever the collation) within a second.
        keys.sort_by(|a, b| (&a.2, &a.0).cmp(&(&b.2, &b.0)));
        let user = UserRecord {
            username: stored.username,
            has_password: stored.hash.is_some(),
            home_directory_type: stored.home_directory_type,
            home_directory: stored.home_directory,
            home_directory_details: parse("home_directory_details", stored.home_directory_details)?,
            role: stored.role,
            policy: parse("policy", stored.policy)?,
            session_tags,
            public_keys: keys.into_iter().map(|(fp, line, _)| (fp, line)).collect(),
            created_at: stored.created_at,
        };
        Ok(Some((user, stored.hash)))
    }

    /// Removes a user and their keys. Returns whether it existed.
    pub async fn remove(&self, username: &str) -> Result<bool> {
        let removed = with_pool!(&self.pool, |pool| {
            let mut tx = pool.begin().await?;
            // Keys first: no reliance on ON DELETE CASCADE (SQLite enforces
            // it only with foreign keys on).
            sqlx::query("DELETE FROM user_keys WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?;
            let removed = sqlx::query("DELETE FROM users WHERE username = $1")
                .bind(username)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// Replaces a user's password. Returns whether the user exists.
    pub async fn set_password(&self, username: &str, password: &crate::Password) -> Result<bool> {
        let hash = hashed(password).await?;
        let changed = with_pool!(&self.pool, |pool| {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
                .bind(&hash)
                .bind(username)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Adds a key; returns its fingerprint.
    pub async fn add_key(&self, username: &str, key: &AuthorizedKey) -> Result<String> {
        let fp = fingerprint(&key.key);
        let line = key_line(key)?;
        let added = now();
        // The user must exist: the INSERT takes its name from the users row,
        // in one statement, so a concurrent removal cannot leave a stray key.
        let inserted = with_pool!(&self.pool, |pool| {
            sqlx::query(
                "INSERT INTO user_keys (username, fingerprint, public_key, added_at) \
                 SELECT username, $2, $3, $4 FROM users WHERE username = $1 \
                 ON CONFLICT (username, fingerprint) DO NOTHING",
            )
            .bind(username)
            .bind(&fp)
            .bind(&line)
            .bind(&added)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 0 {
            if self.get(username).await?.is_none() {
                return Err(StoreError(format!("no user {username:?}")));
            }
            return Err(StoreError(format!(
                "user {username:?} already has key {fp}"
            )));
        }
        Ok(fp)
    }

    /// Removes a key by fingerprint. Returns whether it existed.
    pub async fn remove_key(&self, username: &str, fingerprint: &str) -> Result<bool> {
        let removed = with_pool!(&self.pool, |pool| {
            sqlx::query("DELETE FROM user_keys WHERE username = $1 AND fingerprint = $2")
                .bind(username)
                .bind(fingerprint)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(removed > 0)
    }

    pub async fn close(&self) {
        with_pool!(&self.pool, |pool| pool.close().await)
    }
}

mod provider;

pub use provider::{BUSY, ServiceManaged};

#[cfg(test)]
mod tests;
