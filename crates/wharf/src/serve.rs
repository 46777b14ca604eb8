//! `wharf serve`: start every enabled protocol, stop on SIGINT/SIGTERM.

use std::sync::Arc;

use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use wharf_audit::AuditLog;
use wharf_identity::Password;
use wharf_identity::service_managed::{NewUser, UserStore};
use wharf_listen::Shutdown;
use wharf_sftp::{AuthMethods, SecurityPolicy, SftpConfig, SftpServer};

use crate::config::Config;
use crate::{CommandResult, Failure, hostkeys, wiring};

/// Connections one listener serves at once.
const MAX_CONNECTIONS: usize = 10_000;

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The embedded default's demo user, created when the user store is empty.
async fn ensure_demo_user(users: &UserStore, sftp: Option<std::net::SocketAddr>) -> CommandResult {
    let count = users.count().await.map_err(|e| Failure::Internal(e.0))?;
    if count > 0 {
        return Ok(());
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect();
    users
        .add(&NewUser {
            username: "demo".into(),
            password: Some(Password::new(password.clone())),
            home_directory_type: "LOGICAL".into(),
            home_directory_details: Some(json!([{"Entry": "/", "Target": "/default/demo"}])),
            ..NewUser::default()
        })
        .await
        .map_err(|e| Failure::Internal(e.0))?;
    eprintln!("demo user created: username=demo password={password}");
    if let Some(sftp) = sftp {
        eprintln!("  connect with: sftp -P {} demo@{}", sftp.port(), sftp.ip());
    }
    Ok(())
}

async fn signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return "";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

pub async fn serve(config: Config) -> CommandResult {
    init_tracing();
    if config.sftp.is_none() && config.ftps.is_none() && config.ftp.is_none() {
        return Err(Failure::User(
            "no protocol is enabled: add a [protocols.sftp] (or ftps, ftp) section".into(),
        ));
    }
    let (gateway, users) = wiring::gateway(&config, AuditLog::stdout()).await?;
    let mut sftp_address = None;
    let shutdown = Shutdown::new();
    let mut listeners = tokio::task::JoinSet::new();

    if let Some(sftp) = &config.sftp {
        let host_keys = hostkeys::load_or_generate(&config.server)?;
        let server = SftpServer::new(
            SftpConfig {
                host_keys,
                banner: Some(config.server.banner.clone()),
                idle_timeout: config.server.idle_timeout,
                auth_methods: AuthMethods::parse(&config.identity.sftp_authentication_methods)
                    .unwrap_or(AuthMethods::PublicKeyOrPassword),
                security_policy: SecurityPolicy::parse(&config.server.security_policy)
                    .unwrap_or(SecurityPolicy::Wharf2025_11),
            },
            gateway.clone(),
        )
        .map_err(|e| Failure::User(format!("protocols.sftp: {e}")))?;
        let server = Arc::new(server);
        let listener = TcpListener::bind(sftp.listen).await.map_err(|e| {
            Failure::User(format!(
                "protocols.sftp.listen: cannot listen on {}: {e}",
                sftp.listen
            ))
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Failure::Internal(e.to_string()))?;
        eprintln!("wharf: SFTP listening on {address}");
        sftp_address = Some(address);
        listeners.spawn(wharf_listen::serve(
            listener,
            MAX_CONNECTIONS,
            shutdown.clone(),
            move |stream, peer| {
                let server = server.clone();
                async move { server.serve(stream, peer).await }
            },
        ));
    }
    if config.is_embedded()
        && let Some(users) = &users
    {
        ensure_demo_user(users, sftp_address).await?;
    }
    if config.ftps.is_some() || config.ftp.is_some() {
        eprintln!(
            "wharf: warning: FTPS and FTP are not available in this build yet; their sections are ignored"
        );
    }

    eprintln!("wharf: ready");
    let received = signal().await;
    eprintln!(
        "wharf: {received}: refusing new connections, letting transfers finish for up to {:?}",
        config.server.shutdown_grace
    );
    tokio::select! {
        () = shutdown.run(config.server.shutdown_grace) => {}
        name = signal() => {
            eprintln!("wharf: {name} again: aborting transfers now");
            shutdown.abort.cancel();
        }
    }
    while listeners.join_next().await.is_some() {}
    eprintln!("wharf: stopped");
    Ok(())
}
