//! The admin endpoint (`[server] admin_listen`, SPEC 2 and 6):
//! `/healthz` for load balancers and `/metrics` in the Prometheus text
//! format. Plain HTTP on an address of the operator's choosing (keep it on
//! a private network: it needs no login).

use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wharf_session::Gateway;

/// An identity provider whose last call failed this recently (a timeout, a
/// 5xx, no answer) makes `/healthz` fail.
const PROVIDER_FAILING: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Admin {
    gateway: Arc<Gateway>,
    /// Cancelled when the server starts draining.
    draining: CancellationToken,
}

/// Serves the admin endpoint on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    draining: CancellationToken,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Admin { gateway, draining });
    let shutdown = async move { stop.cancelled().await };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("admin endpoint failed: {error}");
    }
}

/// 200 while every listener is up and the identity provider answers; 503
/// while draining or when the provider's last call (within a minute) got
/// no answer.
async fn healthz(State(admin): State<Admin>) -> impl IntoResponse {
    if admin.draining.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n");
    }
    if admin
        .gateway
        .audit_log()
        .metrics()
        .provider_failing(PROVIDER_FAILING)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the identity provider is not answering\n",
        );
    }
    (StatusCode::OK, "ok\n")
}

async fn metrics(State(admin): State<Admin>) -> impl IntoResponse {
    let gateway = &admin.gateway;
    let mut text = gateway.audit_log().metrics().render();
    let guard = gateway.guard();
    let counters = &guard.counters;
    let gauges: [(&str, &str, &str, u64); 4] = [
        (
            "wharf_memory_budget_bytes",
            "gauge",
            "Request and transfer buffers held by all sessions.",
            gateway.memory_in_use(),
        ),
        (
            "wharf_open_handles",
            "gauge",
            "Open files and listings of all sessions.",
            gateway.handles_in_use(),
        ),
        (
            "wharf_connections_not_logged_in",
            "gauge",
            "Connections that have not logged in yet.",
            guard.pending() as u64,
        ),
        (
            "wharf_addresses_banned",
            "gauge",
            "Addresses refused at accept now.",
            guard.banned() as u64,
        ),
    ];
    for (name, kind, help, value) in gauges {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let name = "wharf_refusals_total";
    let _ = writeln!(
        text,
        "# HELP {name} Connections refused at accept or closed before logging in, by reason.\n# TYPE {name} counter"
    );
    for (reason, counter) in [
        ("banned", &counters.refused_banned),
        ("too_many_not_logged_in", &counters.refused_pending),
        ("busy", &counters.refused_busy),
        ("untrusted_proxy", &counters.refused_untrusted_proxy),
        ("proxy_header", &counters.refused_proxy_header),
        ("login_timeout", &counters.login_timeouts),
        ("evicted", &counters.evicted),
    ] {
        let value = counter.load(Ordering::Relaxed);
        let _ = writeln!(text, "{name}{{reason=\"{reason}\"}} {value}");
    }
    let name = "wharf_failures_total";
    let _ = writeln!(
        text,
        "# HELP {name} Failed logins and protocol violations counted by the brute-force defence.\n# TYPE {name} counter\n{name} {}",
        counters.failures.load(Ordering::Relaxed)
    );
    let name = "wharf_bans_from_other_nodes_total";
    let _ = writeln!(
        text,
        "# HELP {name} Bans decided by other nodes of the cluster and applied here.\n# TYPE {name} counter\n{name} {}",
        counters.shared_bans.load(Ordering::Relaxed)
    );
    let name = "wharf_delayed_passwords_total";
    let _ = writeln!(
        text,
        "# HELP {name} Password logins delayed as a sprayed user's.\n# TYPE {name} counter\n{name} {}",
        counters.delayed_passwords.load(Ordering::Relaxed)
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// Binds the admin endpoint (an error names the key).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, crate::Failure> {
    TcpListener::bind(address).await.map_err(|e| {
        crate::Failure::User(format!(
            "server.admin_listen: cannot listen on {address}: {e}"
        ))
    })
}
