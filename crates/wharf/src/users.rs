//! `wharf user ...`: service-managed users.

use std::collections::BTreeMap;
use std::io::BufRead;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use wharf_identity::service_managed::{NewUser, UserStore};
use wharf_identity::{AuthorizedKey, Password, check_username, validate_response};

use crate::config::Config;
use crate::{CommandResult, Failure, wiring};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user.
    Add(AddArgs),
    /// List users.
    List,
    /// Show one user (never the password hash).
    Show { name: String },
    /// Remove a user.
    Remove { name: String },
    /// Replace a user's password (read from standard input).
    SetPassword {
        name: String,
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Add an SSH public key (`"ssh-ed25519 AAAA..."` or `@authorized_keys`).
    AddKey { name: String, key: String },
    /// Remove an SSH public key by its fingerprint (`SHA256:...`).
    RemoveKey { name: String, fingerprint: String },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    name: String,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
    /// An OpenSSH public key, or `@FILE` for an authorized_keys file (repeatable).
    #[arg(long = "ssh-key", value_name = "KEY")]
    ssh_keys: Vec<String>,
    /// `/STORE/PREFIX`.
    #[arg(long)]
    home_directory: Option<String>,
    /// `PATH` or `LOGICAL`.
    #[arg(long, value_parser = ["PATH", "LOGICAL"])]
    home_directory_type: Option<String>,
    /// `ENTRY=TARGET`, e.g. `/=/default/alice` (repeatable; implies LOGICAL).
    #[arg(long = "home-directory-mapping", value_name = "ENTRY=TARGET")]
    mappings: Vec<String>,
    /// A role from `[roles]`.
    #[arg(long)]
    role: Option<String>,
    /// A session policy: `@FILE` or inline JSON.
    #[arg(long)]
    policy: Option<String>,
    /// A session tag `KEY=VALUE` (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
}

fn read_password() -> Result<Password, Failure> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::User(format!("cannot read the password from standard input: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(Failure::User(
            "the password on standard input is empty".into(),
        ));
    }
    Ok(Password::new(password))
}

/// One key, or every key of an `@authorized_keys` file, each with its
/// options (refused by name when wharf does not implement them).
fn read_keys(argument: &str) -> Result<Vec<AuthorizedKey>, Failure> {
    if let Some(path) = argument.strip_prefix('@') {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::User(format!("cannot read {path}: {e}")))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(
                AuthorizedKey::parse(line)
                    .map_err(|e| Failure::User(format!("{path}:{}: {e}", n + 1)))?,
            );
        }
        if keys.is_empty() {
            return Err(Failure::User(format!("{path} holds no public key")));
        }
        Ok(keys)
    } else {
        Ok(vec![
            AuthorizedKey::parse(argument).map_err(|e| Failure::User(format!("--ssh-key: {e}")))?,
        ])
    }
}

fn key_value(argument: &str, flag: &str) -> Result<(String, String), Failure> {
    argument
        .split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| Failure::User(format!("{flag} {argument:?}: expected KEY=VALUE")))
}

fn user_store_for(
    config: &Config,
) -> impl std::future::Future<Output = Result<UserStore, Failure>> + '_ {
    wiring::user_store(config)
}

async fn add(config: &Config, args: AddArgs) -> CommandResult {
    check_username(&args.name).map_err(|e| Failure::User(e.to_string()))?;
    let password = if args.password_stdin {
        Some(read_password()?)
    } else {
        None
    };
    let mut public_keys = Vec::new();
    for argument in &args.ssh_keys {
        public_keys.extend(read_keys(argument)?);
    }
    if password.is_none() && public_keys.is_empty() {
        return Err(Failure::User(format!(
            "user {:?} needs a password (--password-stdin) or a key (--ssh-key)",
            args.name
        )));
    }
    let logical =
        !args.mappings.is_empty() || args.home_directory_type.as_deref() == Some("LOGICAL");
    let (home_directory_type, home_directory, details) = if logical {
        if args.home_directory.is_some() {
            return Err(Failure::User(
                "--home-directory is for PATH homes; use --home-directory-mapping for LOGICAL"
                    .into(),
            ));
        }
        let mut entries = Vec::new();
        for mapping in &args.mappings {
            let (entry, target) = key_value(mapping, "--home-directory-mapping")?;
            entries.push(json!({"Entry": entry, "Target": target}));
        }
        if entries.is_empty() {
            return Err(Failure::User(
                "LOGICAL needs at least one --home-directory-mapping".into(),
            ));
        }
        ("LOGICAL".to_owned(), None, Some(Value::Array(entries)))
    } else {
        match args.home_directory {
            Some(home) => ("PATH".to_owned(), Some(home), None),
            None if config.storage.len() == 1 => {
                // One store: the user is chrooted to their own folder in it.
                let store = config.storage.keys().next().cloned().unwrap_or_default();
                let target = format!("/{store}/{}", args.name);
                (
                    "LOGICAL".to_owned(),
                    None,
                    Some(json!([{"Entry": "/", "Target": target}])),
                )
            }
            None => {
                return Err(Failure::User(
                    "give --home-directory /STORE/PREFIX or --home-directory-mapping ENTRY=TARGET"
                        .into(),
                ));
            }
        }
    };
    let policy = match &args.policy {
        None => None,
        Some(text) => {
            let text = match text.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| Failure::User(format!("cannot read {path}: {e}")))?,
                None => text.clone(),
            };
            Some(
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| Failure::User(format!("--policy is not JSON: {e}")))?,
            )
        }
    };
    let mut session_tags = BTreeMap::new();
    for tag in &args.tags {
        let (k, v) = key_value(tag, "--tag")?;
        session_tags.insert(k, v);
    }
    let user = NewUser {
        username: args.name.clone(),
        password,
        public_keys,
        home_directory_type,
        home_directory,
        home_directory_details: details,
        role: args.role,
        policy,
        session_tags,
    };
    // Check the user against the configuration exactly as a login would.
    let record_like = json!({
        "HomeDirectoryType": user.home_directory_type,
        "HomeDirectory": user.home_directory,
        "HomeDirectoryDetails": user.home_directory_details,
        "Role": user.role,
        "Policy": user.policy,
        "SessionTags": user.session_tags,
    });
    let context = wharf_session::validation_context(
        config.storage.keys().cloned(),
        config.roles.iter().map(|(n, r)| (n.clone(), r.arn.clone())),
    );
    validate_response(&record_like, &user.username, &context).map_err(Failure::User)?;
    let users = user_store_for(config).await?;
    users.add(&user).await.map_err(|e| Failure::User(e.0))?;
    println!("user {} added", user.username);
    Ok(())
}

pub async fn run(config: &Config, command: UserCommand) -> CommandResult {
    match command {
        UserCommand::Add(args) => add(config, args).await,
        UserCommand::List => {
            let users = user_store_for(config).await?;
            let all = users.list().await.map_err(|e| Failure::Internal(e.0))?;
            println!(
                "{:<24} {:<8} {:<5} {:<8} HOME",
                "USER", "TYPE", "KEYS", "PASSWORD"
            );
            for user in all {
                let home = match (&user.home_directory, &user.home_directory_details) {
                    (Some(home), _) => home.clone(),
                    (None, Some(details)) => details.to_string(),
                    (None, None) => String::new(),
                };
                println!(
                    "{:<24} {:<8} {:<5} {:<8} {home}",
                    user.username,
                    user.home_directory_type,
                    user.public_keys.len(),
                    if user.has_password { "yes" } else { "no" }
                );
            }
            Ok(())
        }
        UserCommand::Show { name } => {
            let users = user_store_for(config).await?;
            let user = users
                .get(&name)
                .await
                .map_err(|e| Failure::Internal(e.0))?
                .ok_or_else(|| Failure::User(format!("no user {name:?}")))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&user.to_json()).unwrap_or_default()
            );
            Ok(())
        }
        UserCommand::Remove { name } => {
            let users = user_store_for(config).await?;
            if users
                .remove(&name)
                .await
                .map_err(|e| Failure::Internal(e.0))?
            {
                println!("user {name} removed");
                Ok(())
            } else {
                Err(Failure::User(format!("no user {name:?}")))
            }
        }
        UserCommand::SetPassword { name, .. } => {
            let password = read_password()?;
            let users = user_store_for(config).await?;
            if users
                .set_password(&name, &password)
                .await
                .map_err(|e| Failure::Internal(e.0))?
            {
                println!("password of {name} changed");
                Ok(())
            } else {
                Err(Failure::User(format!("no user {name:?}")))
            }
        }
        UserCommand::AddKey { name, key } => {
            let keys = read_keys(&key)?;
            let users = user_store_for(config).await?;
            for key in keys {
                let fingerprint = users
                    .add_key(&name, &key)
                    .await
                    .map_err(|e| Failure::User(e.0))?;
                println!("key {fingerprint} added to {name}");
            }
            Ok(())
        }
        UserCommand::RemoveKey { name, fingerprint } => {
            let users = user_store_for(config).await?;
            if users
                .remove_key(&name, &fingerprint)
                .await
                .map_err(|e| Failure::Internal(e.0))?
            {
                println!("key {fingerprint} removed from {name}");
                Ok(())
            } else {
                Err(Failure::User(format!(
                    "user {name:?} has no key {fingerprint}"
                )))
            }
        }
    }
}
