//! `wharf serve`: start every enabled protocol, stop on SIGINT/SIGTERM.

use std::sync::Arc;

use rand::Rng;
use serde_json::json;
use tokio::net::TcpListener;
use wharf_audit::AuditLog;
use wharf_ftp::FtpServer;
use wharf_identity::Password;
use wharf_identity::Protocol;
use wharf_identity::service_managed::{NewUser, UserStore};
use wharf_listen::Shutdown;
use wharf_session::Gateway;
use wharf_sftp::SftpServer;

use crate::config::Config;
use crate::{CommandResult, Failure, wiring};

/// Connections one listener serves at once, at most (fewer when the
/// descriptor limit is low: `limits::max_connections`).
const MAX_CONNECTIONS: usize = 10_000;

/// Connections each of the `listeners` enabled listeners may hold.
fn max_connections(listeners: usize) -> usize {
    crate::limits::max_connections(listeners, MAX_CONNECTIONS)
}
/// The longest a shutdown waits for the stores to abort unfinished uploads.
const STORE_QUIESCE: std::time::Duration = std::time::Duration::from_secs(20);

/// Diagnostics (`tracing`) to stderr, `warn` and above unless `WHARF_LOG`
/// says otherwise: for `serve`, and for the commands that ask the identity
/// provider (`test-idp`, `policy simulate`), so that they show the same
/// warnings a login would.
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The embedded default's demo user, created when the user store is empty.
async fn ensure_demo_user(
    users: &UserStore,
    sftp: Option<std::net::SocketAddr>,
    ftps: Option<std::net::SocketAddr>,
) -> CommandResult {
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
    if let Some(ftps) = ftps {
        eprintln!(
            "  or with FTPS:  curl --ssl-reqd -k --user demo:{password} ftp://{}:{}/",
            ftps.ip(),
            ftps.port()
        );
    }
    Ok(())
}

async fn spawn_ftp(
    listeners: &mut tokio::task::JoinSet<()>,
    shutdown: &Shutdown,
    admission: wharf_listen::Admission,
    gateway: &Arc<Gateway>,
    server: FtpServer,
    listen: std::net::SocketAddr,
    name: &str,
) -> Result<std::net::SocketAddr, Failure> {
    let key = name.to_ascii_lowercase();
    let listener = TcpListener::bind(listen).await.map_err(|e| {
        Failure::User(format!(
            "protocols.{key}.listen: cannot listen on {listen}: {e}"
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::Internal(e.to_string()))?;
    eprintln!("wharf: {name} listening on {address}");
    let protocol = if server.is_ftps() {
        Protocol::Ftps
    } else {
        Protocol::Ftp
    };
    listeners.spawn(wharf_listen::serve(
        listener,
        admission,
        shutdown.clone(),
        refusals(gateway, protocol),
        move |accepted| {
            let server = server.clone();
            async move { server.serve_connection(accepted).await }
        },
    ));
    Ok(address)
}

/// How every listener admits connections: its share of the connections,
/// the process's guard (bans, connections not logged in), and the PROXY
/// protocol rule when it is on.
fn admission(
    gateway: &Arc<Gateway>,
    listeners: usize,
    proxy: &Option<Arc<wharf_listen::ProxyProtocol>>,
) -> wharf_listen::Admission {
    wharf_listen::Admission {
        max_connections: max_connections(listeners),
        guard: gateway.guard().clone(),
        proxy: proxy.clone(),
    }
}

/// Logs the connections a listener refuses at accept.
fn refusals(
    gateway: &Arc<Gateway>,
    protocol: Protocol,
) -> impl Fn(std::net::SocketAddr, &wharf_listen::Refusal) + Send + Sync + 'static {
    let gateway = gateway.clone();
    move |peer, refusal| gateway.refused_at_accept(protocol, peer, &refusal.to_string())
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
    // The same checks as `check-config`, then what only serve does.
    let plan = wiring::ServePlan::build(&config).map_err(Failure::Config)?;
    for warning in config.cluster_warnings() {
        eprintln!("wharf: warning: {warning}");
    }
    let node = crate::cluster::Node::join(config.cluster.as_ref()).await?;
    let (gateway, users) = plan
        .gateway
        .realize(
            AuditLog::stdout(),
            node.as_ref().map(crate::cluster::Node::shared_sessions),
        )
        .await?;
    if let Some(node) = &node {
        node.share_bans(gateway.guard()).await?;
    }
    let shutdown = Shutdown::new();
    {
        let (a, b) = (gateway.clone(), gateway.clone());
        // Every connection of every listener is one task of the tracker.
        let tasks = shutdown.tasks.clone();
        tokio::spawn(crate::memory::return_freed(
            move || a.memory_in_use(),
            move || b.memory_peak(),
            move || tasks.len(),
        ));
    }
    let mut sftp_address = None;
    // The listeners share the connections' part of the descriptors.
    let listening = [plan.sftp.is_some(), plan.ftps.is_some(), plan.ftp.is_some()]
        .into_iter()
        .filter(|&on| on)
        .count();
    let mut listeners = tokio::task::JoinSet::new();

    if let Some(sftp) = plan.sftp {
        let listen = sftp.listen;
        let server = SftpServer::new(sftp.realize()?, gateway.clone())
            .map_err(|e| Failure::User(format!("protocols.sftp: {e}")))?;
        let server = Arc::new(server);
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            Failure::User(format!(
                "protocols.sftp.listen: cannot listen on {listen}: {e}"
            ))
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Failure::Internal(e.to_string()))?;
        eprintln!("wharf: SFTP listening on {address}");
        sftp_address = Some(address);
        listeners.spawn(wharf_listen::serve(
            listener,
            admission(&gateway, listening, &plan.proxy),
            shutdown.clone(),
            refusals(&gateway, Protocol::Sftp),
            move |accepted| {
                let server = server.clone();
                async move { server.serve(accepted).await }
            },
        ));
    }
    let mut ftps_address = None;
    if let Some(ftps) = plan.ftps {
        ftps.realize()?;
        let server = FtpServer::with_settings(ftps.settings, gateway.clone());
        ftps_address = Some(
            spawn_ftp(
                &mut listeners,
                &shutdown,
                admission(&gateway, listening, &plan.proxy),
                &gateway,
                server,
                ftps.listen,
                "FTPS",
            )
            .await?,
        );
    }
    if let Some(ftp) = plan.ftp {
        eprintln!(
            "wharf: warning: plain FTP is enabled on {}: passwords and files cross the network unencrypted",
            ftp.listen
        );
        ftp.realize()?;
        let server = FtpServer::with_settings(ftp.settings, gateway.clone());
        spawn_ftp(
            &mut listeners,
            &shutdown,
            admission(&gateway, listening, &plan.proxy),
            &gateway,
            server,
            ftp.listen,
            "FTP",
        )
        .await?;
    }
    if config.is_embedded()
        && let Some(users) = &users
    {
        ensure_demo_user(users, sftp_address, ftps_address).await?;
    }
    let admin_stop = tokio_util::sync::CancellationToken::new();
    if let Some(address) = config.server.admin_listen {
        let listener = crate::admin::bind(address).await?;
        let bound = listener
            .local_addr()
            .map_err(|e| Failure::Internal(e.to_string()))?;
        eprintln!("wharf: admin listening on {bound}");
        tokio::spawn(crate::admin::serve(
            listener,
            gateway.clone(),
            shutdown.stop_accepting.clone(),
            admin_stop.clone(),
        ));
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
    // Connections are gone; their unfinished uploads are being aborted in
    // the stores (S3: AbortMultipartUpload). Wait for that, bounded.
    if tokio::time::timeout(STORE_QUIESCE, gateway.quiesce_stores())
        .await
        .is_err()
    {
        eprintln!(
            "wharf: warning: the stores' cleanup of unfinished uploads did not finish within {STORE_QUIESCE:?}"
        );
    }
    if let Some(node) = &node {
        node.leave().await;
    }
    admin_stop.cancel();
    eprintln!("wharf: stopped");
    Ok(())
}
