//! Service-managed users: kept by wharf in SQLite (PostgreSQL later), managed
//! with `wharf user`, answered in the same response shape as any provider.
//!
//! Every login reads the database, so changes take effect at the next login
//! without a restart.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

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

/// The service-managed user database.
#[derive(Debug, Clone)]
pub struct UserStore {
    pool: SqlitePool,
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

impl UserStore {
    /// Opens (creating and migrating it if needed) the SQLite database at `path`.
    pub async fn open_sqlite(path: &Path) -> Result<UserStore> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| StoreError(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(StoreError::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                StoreError(format!("cannot open user database {}: {e}", path.display()))
            })?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError(format!("cannot migrate user database: {e}")))?;
        Ok(UserStore { pool })
    }

    pub async fn count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Adds a user; the name must be free.
    pub async fn add(&self, user: &NewUser) -> Result<()> {
        check_username(&user.username).map_err(|e| StoreError(e.to_string()))?;
        let hash = match &user.password {
            Some(password) => {
                let password = password.clone();
                Some(
                    tokio::task::spawn_blocking(move || hash_password(password.expose()))
                        .await
                        .map_err(|e| StoreError(e.to_string()))?
                        .map_err(StoreError)?,
                )
            }
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM users WHERE username = ?")
            .bind(&user.username)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StoreError(format!(
                "user {:?} already exists",
                user.username
            )));
        }
        let created = now();
        sqlx::query(
            "INSERT INTO users (username, password_hash, home_directory_type, home_directory, \
             home_directory_details, role, policy, session_tags, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.username)
        .bind(hash)
        .bind(&user.home_directory_type)
        .bind(&user.home_directory)
        .bind(user.home_directory_details.as_ref().map(Value::to_string))
        .bind(&user.role)
        .bind(user.policy.as_ref().map(Value::to_string))
        .bind(json!(user.session_tags).to_string())
        .bind(&created)
        .execute(&mut *tx)
        .await?;
        for key in &user.public_keys {
            sqlx::query(
                "INSERT OR IGNORE INTO user_keys (username, fingerprint, public_key, added_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(&user.username)
            .bind(fingerprint(&key.key))
            .bind(key_line(key)?)
            .bind(&created)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// All users, by name.
    pub async fn list(&self) -> Result<Vec<UserRecord>> {
        let names: Vec<String> = sqlx::query("SELECT username FROM users ORDER BY username")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<std::result::Result<_, _>>()?;
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

    async fn get_with_hash(&self, username: &str) -> Result<Option<(UserRecord, Option<String>)>> {
        let Some(row) = sqlx::query(
            "SELECT username, password_hash, home_directory_type, home_directory, \
             home_directory_details, role, policy, session_tags, created_at \
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?
        else {
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
        let hash: Option<String> = row.try_get("password_hash")?;
        let tags_text: String = row.try_get("session_tags")?;
        let session_tags: BTreeMap<String, String> = serde_json::from_str(&tags_text)
            .map_err(|e| StoreError(format!("user {username}: stored tags are not JSON: {e}")))?;
        let keys = sqlx::query(
            "SELECT fingerprint, public_key FROM user_keys WHERE username = ? ORDER BY added_at, fingerprint",
        )
        .bind(username)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?)))
        .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        let user = UserRecord {
            username: row.try_get("username")?,
            has_password: hash.is_some(),
            home_directory_type: row.try_get("home_directory_type")?,
            home_directory: row.try_get("home_directory")?,
            home_directory_details: parse(
                "home_directory_details",
                row.try_get("home_directory_details")?,
            )?,
            role: row.try_get("role")?,
            policy: parse("policy", row.try_get("policy")?)?,
            session_tags,
            public_keys: keys,
            created_at: row.try_get("created_at")?,
        };
        Ok(Some((user, hash)))
    }

    /// Removes a user and their keys. Returns whether it existed.
    pub async fn remove(&self, username: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE username = ?")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Replaces a user's password. Returns whether the user exists.
    pub async fn set_password(&self, username: &str, password: &crate::Password) -> Result<bool> {
        let password = password.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(password.expose()))
            .await
            .map_err(|e| StoreError(e.to_string()))?
            .map_err(StoreError)?;
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE username = ?")
            .bind(hash)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Adds a key; returns its fingerprint.
    pub async fn add_key(&self, username: &str, key: &AuthorizedKey) -> Result<String> {
        if self.get(username).await?.is_none() {
            return Err(StoreError(format!("no user {username:?}")));
        }
        let fp = fingerprint(&key.key);
        let done = sqlx::query(
            "INSERT OR IGNORE INTO user_keys (username, fingerprint, public_key, added_at) VALUES (?, ?, ?, ?)",
        )
        .bind(username)
        .bind(&fp)
        .bind(key_line(key)?)
        .bind(now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError(format!(
                "user {username:?} already has key {fp}"
            )));
        }
        Ok(fp)
    }

    /// Removes a key by fingerprint. Returns whether it existed.
    pub async fn remove_key(&self, username: &str, fingerprint: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM user_keys WHERE username = ? AND fingerprint = ?")
            .bind(username)
            .bind(fingerprint)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The status of a login refused because password checks are saturated
/// (not checked, so not a failed guess).
pub const BUSY: u16 = 429;

/// The `service_managed` identity provider over a [`UserStore`].
#[derive(Debug, Clone)]
pub struct ServiceManaged {
    users: UserStore,
    timeout: Duration,
    hashing: Arc<HashQueue>,
}

impl ServiceManaged {
    /// Password checks run in a [`HashQueue`] sized to this machine, whose
    /// waiters give up at half the provider's `timeout`: a login the queue
    /// could not serve is refused as busy (not counted as a guess) rather
    /// than as a provider timeout (which is).
    pub fn new(users: UserStore, timeout: Duration) -> ServiceManaged {
        ServiceManaged {
            users,
            timeout,
            hashing: HashQueue::for_this_machine(timeout / 2),
        }
    }

    pub fn users(&self) -> &UserStore {
        &self.users
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

#[async_trait]
impl IdentityProvider for ServiceManaged {
    fn kind(&self) -> &'static str {
        "service_managed"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn query(&self, request: &LoginRequest) -> Answer {
        let found = match self.users.get_with_hash(&request.username).await {
            Ok(found) => found,
            Err(error) => return Answer::denied(500, error.0),
        };
        let source = request.source_ip;
        let Some((user, hash)) = found else {
            if let Credential::Password(password) = &request.credential {
                // Spend the same time, in the same queue, as a wrong
                // password would.
                let verdict = self
                    .hashing
                    .verify(source, password.expose(), dummy_hash())
                    .await;
                if verdict == Verdict::Busy {
                    return busy();
                }
            }
            return Answer::denied(
                404,
                format!("no service-managed user {:?}", request.username),
            );
        };
        if let Credential::Password(password) = &request.credential {
            let (hash, has_password) = match &hash {
                Some(hash) => (hash.as_str(), true),
                None => (dummy_hash(), false),
            };
            match self.hashing.verify(source, password.expose(), hash).await {
                Verdict::Busy => return busy(),
                _ if !has_password => {
                    return Answer::denied(401, "the user has no password (key logins only)");
                }
                Verdict::Mismatch => return Answer::denied(401, "wrong password"),
                Verdict::Match => {}
            }
        }
        Answer {
            status_code: 200,
            message: "authenticated".to_owned(),
            response: Some(user.response()),
        }
    }
}

#[cfg(test)]
mod tests;
