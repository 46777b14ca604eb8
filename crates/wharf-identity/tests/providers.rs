//! The lambda, api_gateway and command providers against real HTTP servers
//! and real processes: the example runner (examples/identity-providers),
//! a recording server that shows what a provider sent, and servers and
//! programs that fail in every way a provider can.
//!
//! No fixed ports (everything binds 127.0.0.1:0), no sleeps to synchronise
//! (readiness arrives on a stdout line, a Notify or a FIFO), every wait
//! bounded, every process started here killed by PID at the end.

#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use common::{CAROL_KEY, OTHER_KEY, key, password};
use wharf_identity::{
    Answer, ApiGatewayConfig, ApiGatewayProvider, CachingProvider, CommandConfig, CommandProvider,
    Denial, Home, Identity, IdentityProvider, LambdaConfig, LambdaProvider, LoginRequest,
    PasswordHeader, Protocol, ValidationContext, authenticate,
};

/// The longest any single test step may take before the test fails.
const BOUND: Duration = Duration::from_secs(30);
/// What a provider may take beyond its timeout to deny.
/// The tests' server: stores `default` and `reports`, session policies
/// checked.
fn context() -> ValidationContext {
    common::context(&["default", "reports"], true)
}

async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    common::within(BOUND, what, future).await
}

const SLACK: Duration = Duration::from_millis(1500);

// ---------------------------------------------------------------- helpers

#[test]
fn the_example_role_policy_parses() {
    let text = std::fs::read_to_string(examples().join("transfer-users-role.json")).unwrap();
    wharf_policy::Policy::parse("transfer-users", &text, wharf_policy::PolicyKind::Identity)
        .unwrap();
}

async fn run(
    provider: &dyn IdentityProvider,
    request: &LoginRequest,
) -> (Option<Answer>, Result<Identity, Denial>) {
    bounded("a login", authenticate(provider, request, &context())).await
}

#[track_caller]
fn assert_denied(result: &(Option<Answer>, Result<Identity, Denial>), status: u16, part: &str) {
    let (answer, identity) = result;
    let answer = answer.as_ref().expect("the provider was asked");
    let denial = identity.as_ref().expect_err("the login must be denied");
    assert_eq!(answer.status_code, status, "{answer:?}");
    assert!(
        denial.reason.contains(part),
        "reason {:?} lacks {part:?}",
        denial.reason
    );
}

fn lambda(url: &str, timeout: Duration) -> LambdaProvider {
    LambdaProvider::new(LambdaConfig { url: url.into() }, timeout).unwrap()
}

fn api_gateway(url: &str, header: PasswordHeader) -> ApiGatewayProvider {
    ApiGatewayProvider::new(
        ApiGatewayConfig {
            url: url.into(),
            password_header: header,
        },
        Duration::from_secs(10),
    )
    .unwrap()
}

fn command(argv: &[&str], timeout: Duration) -> CommandProvider {
    CommandProvider::new(
        CommandConfig {
            argv: argv.iter().map(|s| s.to_string()).collect(),
        },
        timeout,
    )
    .unwrap()
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/identity-providers")
}

/// `examples/identity-providers/runner.py` serving `handler.py`, killed by
/// PID when dropped.
struct Runner {
    child: std::process::Child,
    url: String,
}

impl Runner {
    async fn start() -> Runner {
        let mut child = std::process::Command::new("python3")
            .arg(examples().join("runner.py"))
            .args(["--port", "0", "--handler"])
            .arg(format!(
                "{}:lambda_handler",
                examples().join("handler.py").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs examples/identity-providers/runner.py");
        let stdout = tokio::process::ChildStdout::from_std(child.stdout.take().unwrap()).unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(stdout);
        let read = tokio::time::timeout(BOUND, stdout.read_line(&mut line)).await;
        let url = line.trim().strip_prefix("listening on ").map(str::to_owned);
        match (read, url) {
            (Ok(Ok(_)), Some(url)) if url.starts_with("http://127.0.0.1:") => Runner { child, url },
            (read, _) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("runner.py did not announce its port: {read:?}, {line:?}");
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request as the recording server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// Path and query, exactly as sent (still percent-encoded).
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The username, from the lambda body or the api_gateway path.
    fn username(&self) -> String {
        if self.method == "POST" {
            self.json()["username"].as_str().unwrap_or("").to_owned()
        } else {
            self.target.split('/').nth(4).unwrap_or("").to_owned()
        }
    }
}

#[derive(Clone)]
enum Reply {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Keep the connection open and never answer.
    Hang,
}

fn respond(status: u16, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Respond {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// A tiny HTTP/1.1 server on 127.0.0.1:0 that records every request and
/// answers what `reply` says.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    arrived: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Recorder {
    async fn start(reply: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let reply = Arc::new(reply);
        let task = tokio::spawn({
            let (seen, arrived) = (seen.clone(), arrived.clone());
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let (seen, arrived, reply) = (seen.clone(), arrived.clone(), reply.clone());
                    connections.spawn(async move {
                        serve_one(stream, &seen, &arrived, reply.as_ref()).await;
                    });
                }
            }
        });
        Recorder {
            addr,
            seen,
            arrived,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` requests have arrived.
    async fn wait_for(&self, n: usize) {
        bounded("requests to arrive", async {
            loop {
                let notified = self.arrived.notified();
                if self.count() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(
    mut stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    arrived: &Notify,
    reply: &(dyn Fn(&Seen) -> Reply + Send + Sync),
) {
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let target = request_line.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Seen {
        method,
        target,
        headers,
        body,
    };
    let answer = reply(&request);
    seen.lock().unwrap().push(request);
    arrived.notify_waiters();
    match answer {
        Reply::Hang => std::future::pending::<()>().await,
        Reply::Respond {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
    }
}

fn ok_body() -> Vec<u8> {
    br#"{"HomeDirectory": "/default/${transfer:UserName}"}"#.to_vec()
}

/// A process's state letter from /proc, or None once it no longer exists.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// Waits (bounded, 5 s) until `pid` is dead: gone, or, with `allow_zombie`,
/// a zombie (a grandchild reparented to a PID 1 that may not reap). Nothing
/// tells a process that is not the parent when another one has gone, so
/// this polls /proc: it checks a state, it does not guess a delay.
async fn assert_dies(pid: u32, allow_zombie: bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match process_state(pid) {
            None => return,
            Some('Z' | 'X') if allow_zombie => return,
            state => {
                assert!(
                    Instant::now() < deadline,
                    "process {pid} still exists in state {state:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

// ------------------------------------------- lambda against the example

#[tokio::test]
async fn lambda_logins_through_the_example_handler() {
    let runner = Runner::start().await;
    let url = format!("{}/2015-03-31/functions/function/invocations", runner.url);
    let provider = lambda(&url, Duration::from_secs(10));

    // PATH home, role by ARN, scope-down policy, session tags.
    let (answer, identity) = run(&provider, &password("alice", "alice-correct-horse")).await;
    let identity = identity.unwrap();
    assert_eq!(answer.unwrap().status_code, 200);
    assert_eq!(
        identity.home,
        Home::Path {
            store: "default".into(),
            prefix: "alice".into()
        }
    );
    assert_eq!(identity.role.as_deref(), Some("transfer-users"));
    let policy = identity.policy.unwrap().to_string();
    assert!(policy.contains("${transfer:UserName}"), "{policy}");
    assert_eq!(identity.session_tags["department"], "finance");
    assert!(identity.public_keys.is_empty());

    // LOGICAL home from a stringified HomeDirectoryDetails.
    let (_, identity) = run(&provider, &password("bob", "bob-battery-staple")).await;
    let Home::Logical(entries) = identity.unwrap().home else {
        panic!("bob's home is LOGICAL");
    };
    let pairs: Vec<_> = entries
        .iter()
        .map(|e| (e.entry.as_str(), e.store.as_str(), e.prefix.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [("/", "default", "bob"), ("/reports", "reports", "shared")]
    );

    // Key login: PublicKeys come back and the client's key must be one.
    let (_, identity) = run(&provider, &key("carol", CAROL_KEY)).await;
    assert_eq!(identity.unwrap().public_keys.len(), 1);
    let result = run(&provider, &key("carol", OTHER_KEY)).await;
    assert_denied(&result, 200, "not one of the user's PublicKeys");

    // Denials: {} from the handler.
    let result = run(&provider, &password("alice", "wrong")).await;
    assert_denied(&result, 200, "answered {} (denied)");
    let result = run(&provider, &password("carol", "anything")).await;
    assert_denied(&result, 200, "answered {} (denied)");
    let result = run(&provider, &key("alice", CAROL_KEY)).await;
    assert_denied(&result, 200, "answered {} (denied)");
    let result = run(&provider, &password("nobody", "x")).await;
    assert_denied(&result, 200, "answered {} (denied)");

    // The runner's `POST /` works too.
    let root = lambda(&format!("{}/", runner.url), Duration::from_secs(10));
    assert!(
        run(&root, &password("alice", "alice-correct-horse"))
            .await
            .1
            .is_ok()
    );
}

// -------------------------------------- api_gateway against the example

#[tokio::test]
async fn api_gateway_logins_through_the_example_handler() {
    let runner = Runner::start().await;
    for header in [PasswordHeader::Password, PasswordHeader::PasswordBase64] {
        for url in [
            runner.url.clone(),
            format!("{}/", runner.url),
            format!("{}/prod", runner.url),
        ] {
            let provider = api_gateway(&url, header);
            let (answer, identity) = run(
                &provider,
                &password("user@example.com", "mail-user-password"),
            )
            .await;
            let identity = identity.unwrap_or_else(|d| panic!("{header} {url}: {d}"));
            assert_eq!(answer.unwrap().status_code, 200);
            assert_eq!(
                identity.home,
                Home::Path {
                    store: "default".into(),
                    prefix: "user@example.com".into()
                }
            );
            let result = run(&provider, &password("user@example.com", "wrong")).await;
            assert_denied(&result, 200, "answered {} (denied)");
        }
        let provider = api_gateway(&runner.url, header);
        let (_, identity) = run(&provider, &key("carol", CAROL_KEY)).await;
        assert_eq!(identity.unwrap().public_keys.len(), 1);
        let result = run(&provider, &key("carol", OTHER_KEY)).await;
        assert_denied(&result, 200, "not one of the user's PublicKeys");
        let (_, identity) = run(&provider, &password("bob", "bob-battery-staple")).await;
        assert!(matches!(identity.unwrap().home, Home::Logical(_)));
    }
    // A password that a plain header cannot carry, and one it can.
    let base64 = api_gateway(&runner.url, PasswordHeader::PasswordBase64);
    let result = run(&base64, &password("alice", "line\nbreak")).await;
    assert_denied(&result, 200, "answered {} (denied)");
    let plain = api_gateway(&runner.url, PasswordHeader::Password);
    let result = run(&plain, &password("alice", "line\nbreak")).await;
    assert_denied(&result, 400, "PasswordBase64");
    assert!(!result.1.unwrap_err().reason.contains("line"));
}

// ------------------------------------------------- what was sent, exactly

#[tokio::test]
async fn lambda_sends_the_aws_lambda_event() {
    let server = Recorder::start(|_| respond(200, ok_body())).await;
    let provider = lambda(
        &format!("{}/2015-03-31/functions/function/invocations", server.url()),
        Duration::from_secs(10),
    );
    let mut request = password("user@example.com", "p@ss \"wörd\"");
    request.protocol = Protocol::Ftps;
    let (_, identity) = run(&provider, &request).await;
    assert_eq!(
        identity.unwrap().home,
        Home::Path {
            store: "default".into(),
            prefix: "user@example.com".into()
        }
    );
    let result = run(&provider, &key("carol", CAROL_KEY)).await;
    assert_denied(&result, 200, "no PublicKeys");

    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/2015-03-31/functions/function/invocations");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(
        seen[0].json(),
        json!({"username": "user@example.com", "password": "p@ss \"wörd\"",
               "protocol": "FTPS", "serverId": "s-0123456789abcdef0", "sourceIp": "192.0.2.10"})
    );
    assert_eq!(
        seen[1].json(),
        json!({"username": "carol", "protocol": "SFTP",
               "serverId": "s-0123456789abcdef0", "sourceIp": "192.0.2.10"})
    );
}

#[tokio::test]
async fn api_gateway_sends_the_aws_api_gateway_request() {
    let server = Recorder::start(|_| {
        respond(
            200,
            format!(r#"{{"HomeDirectory": "/default", "PublicKeys": ["{CAROL_KEY}"]}}"#),
        )
    })
    .await;
    let mut request = password("user@example.com", "pässword 1");
    request.protocol = Protocol::Ftps;
    for (url, header) in [
        (format!("{}/prod", server.url()), PasswordHeader::Password),
        (
            format!("{}/prod/", server.url()),
            PasswordHeader::PasswordBase64,
        ),
    ] {
        let provider = api_gateway(&url, header);
        assert!(run(&provider, &request).await.1.is_ok());
        assert!(run(&provider, &key("carol", CAROL_KEY)).await.1.is_ok());
    }
    let seen = server.seen();
    assert_eq!(seen.len(), 4);
    let expected_target = "/prod/servers/s-0123456789abcdef0/users/user%40example.com/config?protocol=FTPS&sourceIp=192.0.2.10";
    for s in &seen {
        assert_eq!(s.method, "GET");
        assert!(s.body.is_empty());
    }
    assert_eq!(seen[0].target, expected_target);
    assert_eq!(seen[2].target, expected_target);
    assert_eq!(
        seen[1].target,
        "/prod/servers/s-0123456789abcdef0/users/carol/config?protocol=SFTP&sourceIp=192.0.2.10"
    );
    // Password as UTF-8 bytes in `Password`; base64 in `PasswordBase64`.
    assert_eq!(seen[0].header("Password"), Some("pässword 1"));
    assert_eq!(seen[0].header("PasswordBase64"), None);
    assert_eq!(seen[2].header("Password"), None);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(seen[2].header("PasswordBase64").unwrap())
        .unwrap();
    assert_eq!(decoded, "pässword 1".as_bytes());
    // Key logins carry no password header at all.
    for s in [&seen[1], &seen[3]] {
        assert_eq!(s.header("Password"), None);
        assert_eq!(s.header("PasswordBase64"), None);
    }
}

// ------------------------------------------------------- HTTP failures

#[tokio::test]
async fn http_timeout_denies_within_the_timeout() {
    // Accepts and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    let timeout = Duration::from_millis(800);
    let provider = lambda(&format!("http://{addr}/"), timeout);
    let started = Instant::now();
    let result = run(&provider, &password("alice", "pw")).await;
    let took = started.elapsed();
    assert_denied(&result, 504, "did not answer within");
    assert!(took >= timeout && took < timeout + SLACK, "{took:?}");

    let gateway = ApiGatewayProvider::new(
        ApiGatewayConfig {
            url: format!("http://{addr}"),
            password_header: PasswordHeader::Password,
        },
        timeout,
    )
    .unwrap();
    let started = Instant::now();
    assert_denied(
        &run(&gateway, &key("carol", CAROL_KEY)).await,
        504,
        "did not answer within",
    );
    assert!(started.elapsed() < timeout + SLACK);
    held.abort();
}

#[tokio::test]
async fn connection_refused_denies_at_once() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let provider = lambda(&format!("http://{addr}/"), Duration::from_secs(10));
    let started = Instant::now();
    let result = run(&provider, &password("alice", "secret-pw")).await;
    assert_denied(
        &result,
        502,
        "cannot connect to the lambda identity provider",
    );
    assert!(!result.1.unwrap_err().reason.contains("secret-pw"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let gateway = api_gateway(&format!("http://{addr}"), PasswordHeader::Password);
    assert_denied(
        &run(&gateway, &password("alice", "x")).await,
        502,
        "cannot connect",
    );
}

#[tokio::test]
async fn non_2xx_denies_with_the_status() {
    let server = Recorder::start(|seen| match seen.username().as_str() {
        "forbidden" => respond(403, "{\"message\": \"Forbidden\"}"),
        "echoes" => respond(
            500,
            format!("oops: {}", String::from_utf8_lossy(&seen.body)),
        ),
        _ => respond(503, ""),
    })
    .await;
    let provider = lambda(&server.url(), Duration::from_secs(10));
    assert_denied(
        &run(&provider, &password("forbidden", "pw")).await,
        403,
        "answered HTTP 403: {\"message\": \"Forbidden\"}",
    );
    assert_denied(
        &run(&provider, &password("unavailable", "pw")).await,
        503,
        "answered HTTP 503",
    );
    // An error body that echoes the request never puts the password in the reason.
    let result = run(&provider, &password("echoes", "hunter2-secret")).await;
    assert_denied(&result, 500, "\"password\":\"***\"");
    let reason = result.1.unwrap_err().reason;
    assert!(!reason.contains("hunter2-secret"), "{reason}");
    assert!(!format!("{:?}", result.0).contains("hunter2-secret"));
    let gateway = api_gateway(&server.url(), PasswordHeader::Password);
    assert_denied(
        &run(&gateway, &password("forbidden", "pw")).await,
        403,
        "HTTP 403",
    );
}

/// Both HTTP providers, against a server that always answers `reply`.
async fn both_http_deny(reply: Reply, status: u16, part: &str) {
    let server = Recorder::start(move |_| reply.clone()).await;
    for provider in [
        Box::new(lambda(&server.url(), Duration::from_secs(10))) as Box<dyn IdentityProvider>,
        Box::new(api_gateway(&server.url(), PasswordHeader::Password)),
    ] {
        let started = Instant::now();
        let result = run(provider.as_ref(), &password("alice", "pw")).await;
        assert_denied(&result, status, &part.replace("{kind}", provider.kind()));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn invalid_json_denies() {
    both_http_deny(
        respond(200, "{\"HomeDirectory\": "),
        200,
        "answered with invalid JSON",
    )
    .await;
}

#[tokio::test]
async fn an_empty_object_denies() {
    both_http_deny(respond(200, "{}"), 200, "answered {} (denied)").await;
}

#[tokio::test]
async fn json_null_denies() {
    both_http_deny(respond(200, "null"), 200, "answered null (denied)").await;
}

#[tokio::test]
async fn an_empty_body_or_a_non_object_denies() {
    both_http_deny(respond(200, ""), 200, "answered with nothing").await;
    both_http_deny(
        respond(200, "[]"),
        200,
        "a JSON array, not the response object",
    )
    .await;
}

#[tokio::test]
async fn an_answer_over_one_mebibyte_denies() {
    both_http_deny(
        respond(200, vec![b' '; 1024 * 1024 + 10]),
        502,
        "answered more than 1048576 bytes",
    )
    .await;
}

#[tokio::test]
async fn a_function_error_denies() {
    let reply = Reply::Respond {
        status: 200,
        headers: vec![("X-Amz-Function-Error", "Unhandled".into())],
        body: br#"{"errorMessage": "table missing", "errorType": "KeyError", "stackTrace": []}"#
            .to_vec(),
    };
    both_http_deny(
        reply,
        502,
        "the {kind} function failed (Unhandled): KeyError: table missing",
    )
    .await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // The 302 itself denies; nobody asks /elsewhere (both_http_deny counts
    // exactly one request per provider).
    let reply = Reply::Respond {
        status: 302,
        headers: vec![("Location", "/elsewhere".into())],
        body: ok_body(),
    };
    both_http_deny(reply, 302, "answered HTTP 302").await;
}

// --------------------------------------------------------------- command

fn runner_command() -> Vec<String> {
    vec![
        "python3".into(),
        examples().join("runner.py").display().to_string(),
        "--command".into(),
        "--handler".into(),
        format!("{}:lambda_handler", examples().join("handler.py").display()),
    ]
}

#[tokio::test]
async fn command_logins_through_the_example_handler() {
    let argv = runner_command();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let provider = command(&argv, Duration::from_secs(20));
    let (answer, identity) = run(&provider, &password("alice", "alice-correct-horse")).await;
    assert_eq!(answer.unwrap().status_code, 200);
    assert_eq!(identity.unwrap().session_tags["department"], "finance");
    let (_, identity) = run(&provider, &key("carol", CAROL_KEY)).await;
    assert_eq!(identity.unwrap().public_keys.len(), 1);
    assert_denied(
        &run(&provider, &password("alice", "wrong")).await,
        200,
        "answered {} (denied)",
    );
}

#[tokio::test]
async fn command_receives_the_event_on_stdin() {
    // Echoes stdin back as a response field (cat, then a closing brace).
    let provider = command(
        &[
            "sh",
            "-c",
            r#"printf '{"HomeDirectory": "/default", "Event": '; cat; printf '}'"#,
        ],
        Duration::from_secs(10),
    );
    let (answer, identity) = run(&provider, &password("alice", "pw")).await;
    assert_eq!(identity.unwrap().unknown_fields, ["Event"]);
    assert_eq!(
        answer.unwrap().response.unwrap()["Event"],
        json!({"username": "alice", "password": "pw", "protocol": "SFTP",
               "serverId": "s-0123456789abcdef0", "sourceIp": "192.0.2.10"})
    );
}

async fn command_denies(argv: &[&str], status: u16, part: &str) -> Denial {
    let started = Instant::now();
    let result = run(
        &command(argv, Duration::from_secs(10)),
        &password("alice", "top-secret-42"),
    )
    .await;
    assert_denied(&result, status, part);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!format!("{result:?}").contains("top-secret-42"));
    result.1.unwrap_err()
}

#[tokio::test]
async fn a_command_exiting_non_zero_denies() {
    command_denies(
        &["sh", "-c", "echo 'no such user' >&2; exit 3"],
        502,
        "exited with status 3; stderr: no such user",
    )
    .await;
    // Even with a valid answer on stdout.
    command_denies(
        &[
            "sh",
            "-c",
            "echo '{\"HomeDirectory\": \"/default\"}'; exit 1",
        ],
        502,
        "exited with status 1",
    )
    .await;
    // stderr that echoes the event: the password is redacted.
    command_denies(
        &["sh", "-c", "cat >&2; exit 1"],
        502,
        "\"password\":\"***\"",
    )
    .await;
}

#[tokio::test]
async fn a_command_printing_nothing_denies() {
    command_denies(&["true"], 502, "printed nothing").await;
    command_denies(&["sh", "-c", "echo; echo ' '"], 502, "printed nothing").await;
}

#[tokio::test]
async fn a_command_killed_by_a_signal_denies() {
    command_denies(
        &["sh", "-c", "echo dying >&2; kill -9 $$"],
        502,
        "killed by signal 9 (SIGKILL); stderr: dying",
    )
    .await;
    command_denies(&["sh", "-c", "kill -SEGV $$"], 502, "signal 11 (SIGSEGV)").await;
}

#[tokio::test]
async fn a_command_printing_invalid_json_or_an_empty_object_denies() {
    command_denies(&["echo", "not json"], 200, "answered with invalid JSON").await;
    command_denies(&["echo", "{}"], 200, "answered {} (denied)").await;
    command_denies(&["echo", "null"], 200, "answered null (denied)").await;
}

#[tokio::test]
async fn a_command_printing_too_much_or_not_starting_denies() {
    command_denies(
        &["sh", "-c", "head -c 2000000 /dev/zero | tr '\\0' ' '"],
        502,
        "printed more than 1048576 bytes and was killed",
    )
    .await;
    command_denies(
        &["/nonexistent/wharf-idp"],
        502,
        "cannot start the command identity provider \"/nonexistent/wharf-idp\"",
    )
    .await;
    // A program that ignores its stdin and answers is fine.
    let fine = command(
        &["echo", r#"{"HomeDirectory": "/default"}"#],
        Duration::from_secs(10),
    );
    assert!(run(&fine, &password("alice", "pw")).await.1.is_ok());
}

#[tokio::test]
async fn a_hanging_command_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The program records its pid and a child's, then waits forever.
    let script = format!(
        "echo $$ > {0}.tmp; sleep 1000 & echo $! >> {0}.tmp; mv {0}.tmp {0}; echo waiting >&2; wait",
        pids.display()
    );
    let timeout = Duration::from_millis(1500);
    let provider = command(&["sh", "-c", &script], timeout);
    let started = Instant::now();
    let result = run(&provider, &password("alice", "pw")).await;
    let took = started.elapsed();
    assert_denied(
        &result,
        504,
        "did not finish within 1.5s and was killed; stderr: waiting",
    );
    assert!(took >= timeout && took < timeout + SLACK, "{took:?}");
    let text = std::fs::read_to_string(&pids).expect("the program wrote its pids");
    let pids: Vec<u32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(pids.len(), 2);
    // The program itself was reaped; its child (another process group
    // member) was killed too.
    assert_eq!(process_state(pids[0]), None, "the program still exists");
    assert_dies(pids[1], true).await;
}

#[tokio::test]
async fn an_abandoned_command_query_kills_the_program() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let script = format!("echo $$ > {}; exec sleep 1000", fifo.path.display());
    let provider = command(&["sh", "-c", &script], Duration::from_secs(60));
    let request = password("alice", "pw");
    // Drive the query until the program says it runs, then drop it.
    let mut query = Box::pin(provider.query(&request));
    let mut reader = fifo.reader();
    let mut line = String::new();
    bounded("the program to start", async {
        tokio::select! {
            answer = &mut query => panic!("the query finished: {answer:?}"),
            read = reader.read_line(&mut line) => { read.unwrap(); }
        }
    })
    .await;
    drop(query);
    let pid: u32 = line.trim().parse().unwrap();
    assert_dies(pid, false).await;
}

/// A named pipe the test reads and a program writes: the program's "I am
/// running" arrives as an event, not after a guessed sleep.
struct Fifo {
    path: PathBuf,
}

impl Fifo {
    fn new(dir: &std::path::Path) -> Fifo {
        let path = dir.join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        Fifo { path }
    }

    /// Opened read-write, so that reads wait for a writer's data instead
    /// of seeing end-of-file before the program has opened its end.
    fn reader(&self) -> BufReader<tokio::net::unix::pipe::Receiver> {
        BufReader::new(
            tokio::net::unix::pipe::OpenOptions::new()
                .read_write(true)
                .open_receiver(&self.path)
                .unwrap(),
        )
    }
}

// ----------------------------------------------------------------- cache

#[tokio::test]
async fn the_cache_serves_successes_and_asks_again_for_anything_else() {
    let server = Recorder::start(|seen| {
        if seen.json()["password"] == "right" {
            respond(200, ok_body())
        } else {
            respond(200, "{}")
        }
    })
    .await;
    let inner = Arc::new(lambda(&server.url(), Duration::from_secs(10)));
    let cache = CachingProvider::new(inner, Duration::from_secs(300));

    let (first, identity) = run(&cache, &password("alice", "right")).await;
    assert!(identity.is_ok());
    let (second, identity) = run(&cache, &password("alice", "right")).await;
    assert!(identity.is_ok());
    assert_eq!(
        server.count(),
        1,
        "the second login is served from the cache"
    );
    assert_eq!(second.unwrap().response, first.unwrap().response);

    // A wrong password after a cached success is asked, and denied.
    assert_denied(
        &run(&cache, &password("alice", "wrong")).await,
        200,
        "answered {} (denied)",
    );
    assert_eq!(server.count(), 2);
    // Failures are never cached.
    assert_denied(
        &run(&cache, &password("alice", "wrong")).await,
        200,
        "answered {} (denied)",
    );
    assert_eq!(server.count(), 3);
    // Another address or protocol is another key.
    let mut elsewhere = password("alice", "right");
    elsewhere.source_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 99));
    assert!(run(&cache, &elsewhere).await.1.is_ok());
    assert_eq!(server.count(), 4);
    // The original success is still cached.
    assert!(run(&cache, &password("alice", "right")).await.1.is_ok());
    assert_eq!(server.count(), 4);
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn the_cache_treats_each_key_separately() {
    let server = Recorder::start(|_| {
        respond(
            200,
            format!(r#"{{"HomeDirectory": "/default", "PublicKeys": ["{CAROL_KEY}"]}}"#),
        )
    })
    .await;
    let cache = CachingProvider::new(
        Arc::new(lambda(&server.url(), Duration::from_secs(10))),
        Duration::from_secs(300),
    );
    assert!(run(&cache, &key("carol", CAROL_KEY)).await.1.is_ok());
    assert!(run(&cache, &key("carol", CAROL_KEY)).await.1.is_ok());
    assert_eq!(server.count(), 1);
    // Another key asks again (and is refused by the key check).
    assert_denied(
        &run(&cache, &key("carol", OTHER_KEY)).await,
        200,
        "not one of the user's PublicKeys",
    );
    assert_eq!(server.count(), 2);
}

// ------------------------------------------------------- independence

#[tokio::test]
async fn a_hanging_query_does_not_delay_other_logins() {
    let server = Recorder::start(|seen| {
        if seen.username() == "slowpoke" {
            Reply::Hang
        } else {
            respond(200, ok_body())
        }
    })
    .await;
    let timeout = Duration::from_secs(3);
    let provider: Arc<dyn IdentityProvider> = Arc::new(CachingProvider::new(
        Arc::new(lambda(&server.url(), timeout)),
        Duration::from_secs(60),
    ));
    let started = Instant::now();
    let slow = tokio::spawn({
        let provider = provider.clone();
        async move { authenticate(provider.as_ref(), &password("slowpoke", "pw"), &context()).await }
    });
    server.wait_for(1).await;

    let fast_started = Instant::now();
    let (_, identity) = run(provider.as_ref(), &password("alice", "pw")).await;
    assert!(identity.is_ok());
    assert!(
        fast_started.elapsed() < Duration::from_secs(1),
        "{:?}",
        fast_started.elapsed()
    );
    assert!(!slow.is_finished(), "the hanging query is still waiting");

    let result = bounded("the hanging query", slow).await.unwrap();
    assert_denied(&result, 504, "did not answer within 3s");
    assert!(started.elapsed() < timeout + SLACK);

    // The same for a command provider: one login hangs, another answers.
    let dir = tempfile::tempdir().unwrap();
    let fifo = Fifo::new(dir.path());
    let script = format!(
        "read line; case \"$line\" in *slowpoke*) echo hanging > {}; exec sleep 1000;; esac; \
         echo '{{\"HomeDirectory\": \"/default\"}}'",
        fifo.path.display()
    );
    let hanging = Arc::new(command(&["sh", "-c", &script], timeout));
    let mut reader = fifo.reader();
    let slow = tokio::spawn({
        let provider = hanging.clone();
        async move { authenticate(provider.as_ref(), &password("slowpoke", "pw"), &context()).await }
    });
    let mut line = String::new();
    bounded("the slow program to start", reader.read_line(&mut line))
        .await
        .unwrap();
    let fast_started = Instant::now();
    assert!(
        run(hanging.as_ref(), &password("alice", "pw"))
            .await
            .1
            .is_ok()
    );
    assert!(fast_started.elapsed() < Duration::from_secs(2));
    assert!(!slow.is_finished(), "the hanging command is still running");
    let result = bounded("the hanging command", slow).await.unwrap();
    assert_denied(&result, 504, "did not finish within 3s");
}
