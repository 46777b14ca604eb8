//! `wharf test-idp` and `wharf policy simulate`: see what a login would get,
//! and why a request is allowed or denied.

use std::net::IpAddr;

use clap::Args;
use serde_json::{Value, json};
use wharf_audit::AuditLog;
use wharf_identity::{Credential, Identity, Protocol, fingerprint, parse_public_key};
use wharf_session::{ConnInfo, Gateway};

use crate::config::Config;
use crate::{CommandResult, Failure, wiring};

#[derive(Args, Debug)]
pub struct TestIdpArgs {
    #[arg(long)]
    user: String,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with = "public_key")]
    password_stdin: bool,
    /// Test a key login with this public key file (`id_ed25519.pub`).
    #[arg(long, value_name = "FILE")]
    public_key: Option<std::path::PathBuf>,
    #[arg(long, default_value = "SFTP", value_parser = ["SFTP", "FTPS", "FTP"])]
    protocol: String,
    #[arg(long, default_value = "127.0.0.1")]
    source_ip: IpAddr,
}

fn protocol(name: &str) -> Protocol {
    match name {
        "FTPS" => Protocol::Ftps,
        "FTP" => Protocol::Ftp,
        _ => Protocol::Sftp,
    }
}

fn conn(protocol: Protocol, source_ip: IpAddr) -> ConnInfo {
    ConnInfo {
        session_id: "test-idp".into(),
        source_ip,
        protocol,
        client: None,
        secure_transport: protocol != Protocol::Ftp,
    }
}

/// The resolved session of an identity, as JSON.
fn session_json(gateway: &Gateway, identity: &Identity, conn: &ConnInfo) -> Result<Value, String> {
    let authorizer = gateway.authorizer(identity, conn).map_err(|d| d.reason)?;
    Ok(json!({
        "UserName": identity.username,
        "Role": gateway.role_arn(identity),
        "Home": gateway.describe_home(identity),
        "SessionTags": identity.session_tags,
        // Fingerprints, each followed by the options that restrict it.
        "PublicKeys": identity
            .public_keys
            .iter()
            .map(|k| match k.options() {
                "" => fingerprint(&k.key),
                options => format!("{} {options}", fingerprint(&k.key)),
            })
            .collect::<Vec<_>>(),
        "PosixProfile": identity.posix_profile,
        "UnknownFields": identity.unknown_fields,
        "EffectivePolicies": authorizer.describe(),
    }))
}

pub async fn run(config: &Config, args: TestIdpArgs) -> CommandResult {
    let credential = match (&args.public_key, args.password_stdin) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::User(format!("cannot read {}: {e}", path.display())))?;
            Credential::PublicKey(
                parse_public_key(text.trim())
                    .map_err(|e| Failure::User(format!("{}: {e}", path.display())))?,
            )
        }
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Failure::User(format!("cannot read the password: {e}")))?;
            Credential::Password(wharf_identity::Password::new(
                line.trim_end_matches(['\n', '\r']),
            ))
        }
        (None, false) => {
            return Err(Failure::User(
                "give --password-stdin or --public-key FILE".into(),
            ));
        }
    };
    // The provider's warnings (unknown response fields...) go to stderr.
    crate::serve::init_tracing();
    let (gateway, _) = wiring::GatewayPlan::for_logins(config)?
        .realize(AuditLog::discard(), None)
        .await?;
    let conn = conn(protocol(&args.protocol), args.source_ip);
    let (answer, result) = gateway.ask(&conn, &args.user, credential).await;
    let mut output = json!({
        "StatusCode": answer.as_ref().map(|a| a.status_code),
        "Message": answer.as_ref().map(|a| a.message.clone()),
        "Response": answer.as_ref().and_then(|a| a.response.clone()),
    });
    let allowed = match result.and_then(|identity| {
        session_json(&gateway, &identity, &conn).map_err(wharf_identity::Denial::new)
    }) {
        Ok(session) => {
            output["Session"] = session;
            true
        }
        Err(denial) => {
            output["Denied"] = json!(denial.reason);
            false
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&output).unwrap_or_default()
    );
    if allowed { Ok(()) } else { Err(Failure::No) }
}

pub async fn simulate(
    config: &Config,
    user: &str,
    action: &str,
    resource: &str,
    context: &[String],
) -> CommandResult {
    let mut extra = Vec::new();
    for pair in context {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Failure::User(format!("--context {pair:?}: expected KEY=VALUE")))?;
        extra.push((key.to_owned(), value.to_owned()));
    }
    if !resource.starts_with("arn:") {
        return Err(Failure::User(format!(
            "--resource {resource:?} is not an ARN (arn:aws:s3:::STORE/key)"
        )));
    }
    crate::serve::init_tracing();
    let (gateway, _) = wiring::GatewayPlan::for_logins(config)?
        .realize(AuditLog::discard(), None)
        .await?;
    let source_ip = extra
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("aws:SourceIp"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let protocol = extra
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("transfer:Protocol"))
        .map(|(_, v)| protocol(v))
        .unwrap_or(Protocol::Sftp);
    let conn = conn(protocol, source_ip);
    let (_, identity) = gateway.lookup(&conn, user).await;
    let identity = identity
        .map_err(|d| Failure::User(format!("cannot resolve user {user:?}: {}", d.reason)))?;
    let authorizer = gateway
        .authorizer(&identity, &conn)
        .map_err(|d| Failure::User(d.reason))?;
    // The store is the bucket part of an S3 ARN, for its bucket policy.
    let store = resource
        .strip_prefix("arn:aws:s3:::")
        .map(|rest| rest.split('/').next().unwrap_or(rest));
    let extra_refs: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let decision = authorizer.decide(action, resource, &extra_refs, store);
    println!(
        "{}",
        if decision.allowed {
            "allowed"
        } else {
            "denied"
        }
    );
    println!("{decision}");
    if decision.allowed {
        Ok(())
    } else {
        Err(Failure::No)
    }
}
