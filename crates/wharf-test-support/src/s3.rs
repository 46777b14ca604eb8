//! Launches a real S3 API server (moto_server) for tests, and looks inside it
//! without going through wharf's code: plain HTTP for bucket creation and
//! reset, boto3 (in the same Python environment as moto) for listings,
//! multipart uploads and object headers.
//!
//! `moto_server` is found through `WHARF_MOTO_SERVER`, else
//! `<workspace>/.venv/bin/moto_server`, else `PATH`; `scripts/setup-test-env`
//! installs it. Each [`S3Server`] is its own process on a free port, killed
//! (by PID) when dropped. moto accepts any credentials and does not check
//! signatures.

use crate::tools::{find_in_path, workspace_root};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Access key and secret that the servers accept (any would do).
pub const ACCESS_KEY_ID: &str = "wharf-test-access-key";
pub const SECRET_ACCESS_KEY: &str = "wharf-test-secret-key";
pub const REGION: &str = "us-east-1";

/// How long a server may take to answer its first request.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A multipart upload that has been neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartUpload {
    pub key: String,
    pub upload_id: String,
}

/// What HeadObject says about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// `AES256` or `aws:kms`, when the object is encrypted.
    pub server_side_encryption: Option<String>,
    pub kms_key_id: Option<String>,
}

/// A running moto_server.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    python: PathBuf,
    /// Holds moto's log.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .finish()
    }
}

fn find_moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_MOTO_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "WHARF_MOTO_SERVER={} does not exist: run scripts/setup-test-env to install \
             moto_server, or point WHARF_MOTO_SERVER at it",
            path.display()
        );
        return path;
    }
    let venv = workspace_root().join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    if let Some(found) = find_in_path("moto_server") {
        return found;
    }
    panic!(
        "moto_server not found (looked at $WHARF_MOTO_SERVER, {} and PATH): \
         run scripts/setup-test-env to install it",
        venv.display()
    );
}

/// The Python next to moto_server (it has boto3), else `python3`.
fn find_python(moto_server: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_PYTHON") {
        return PathBuf::from(path);
    }
    let dir = moto_server.parent().unwrap_or(Path::new("."));
    for name in ["python3", "python"] {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    PathBuf::from("python3")
}

/// Polls `GET /moto-api/` until it answers, the process exits or the
/// deadline passes.
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("it exited with {status}: {log}"));
        }
        if let Ok((200, _)) = http(port, "GET", "/moto-api/") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no answer within {START_DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot find a free port")
}

/// One plain HTTP/1.1 request without a body; returns the status and body.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad HTTP response: {text:.200}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Creates the boto3 client every inspection script starts with.
const PRELUDE: &str = r#"
import json, sys
import boto3
from botocore.config import Config
s3 = boto3.client(
    "s3",
    endpoint_url=sys.argv[1],
    aws_access_key_id=sys.argv[2],
    aws_secret_access_key=sys.argv[3],
    region_name=sys.argv[4],
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
)
args = sys.argv[5:]
"#;

impl S3Server {
    /// Starts moto_server on a free port and waits until it answers.
    pub fn start() -> S3Server {
        let moto_server = find_moto_server();
        let python = find_python(&moto_server);
        let dir = tempfile::tempdir().expect("cannot create a temporary directory");
        let log = dir.path().join("moto.log");
        let mut last_error = String::new();
        // The port is free when chosen but could be taken before moto binds
        // it: try a few.
        for _ in 0..3 {
            let port = free_port();
            let log_file = std::fs::File::create(&log).expect("cannot create the moto log");
            let mut child = Command::new(&moto_server)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log_file)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto_server.display()));
            match wait_ready(&mut child, port, &log) {
                Ok(()) => {
                    return S3Server {
                        child: Some(child),
                        port,
                        python,
                        _dir: dir,
                    };
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = error;
                }
            }
        }
        panic!("moto_server did not start: {last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a bucket (S3 bucket naming rules: 3-63 lowercase letters,
    /// digits, dots and hyphens).
    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) =
            http(self.port, "PUT", &format!("/{bucket}")).expect("CreateBucket failed");
        assert_eq!(status, 200, "CreateBucket {bucket}: {body}");
    }

    /// Forgets every bucket and object.
    pub fn reset(&self) {
        let (status, body) = http(self.port, "POST", "/moto-api/reset").expect("reset failed");
        assert_eq!(status, 200, "reset: {body}");
    }

    /// Kills the server now (to test an endpoint that dies).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs a Python script with boto3's `s3` client (and `args`, `json`)
    /// defined, feeding it `stdin`, and parses what it prints as JSON.
    pub fn boto3(&self, script: &str, args: &[&str], stdin: &str) -> Value {
        let endpoint = self.endpoint();
        let mut child = Command::new(&self.python)
            .arg("-c")
            .arg(format!("{PRELUDE}\n{script}"))
            .args([endpoint.as_str(), ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.python.display()));
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("cannot write to python");
        }
        let output = child.wait_with_output().expect("python failed");
        assert!(
            output.status.success(),
            "boto3 script failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "boto3 script printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// Every key in the bucket under `prefix` (no delimiter), in order.
    pub fn list_keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let value = self.boto3(
            r#"
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=args[0], Prefix=args[1]):
    keys += [o["Key"] for o in page.get("Contents", [])]
print(json.dumps(keys))
"#,
            &[bucket, prefix],
            "",
        );
        serde_json::from_value(value).expect("a list of keys")
    }

    /// Multipart uploads in progress in the bucket.
    pub fn multipart_uploads(&self, bucket: &str) -> Vec<MultipartUpload> {
        let value = self.boto3(
            r#"
r = s3.list_multipart_uploads(Bucket=args[0])
print(json.dumps([[u["Key"], u["UploadId"]] for u in r.get("Uploads", [])]))
"#,
            &[bucket],
            "",
        );
        let pairs: Vec<(String, String)> = serde_json::from_value(value).expect("upload pairs");
        pairs
            .into_iter()
            .map(|(key, upload_id)| MultipartUpload { key, upload_id })
            .collect()
    }

    /// HeadObject, or `None` when there is no such object.
    pub fn head_object(&self, bucket: &str, key: &str) -> Option<ObjectHead> {
        let value = self.boto3(
            r#"
try:
    h = s3.head_object(Bucket=args[0], Key=args[1])
    print(json.dumps({"size": h["ContentLength"], "sse": h.get("ServerSideEncryption"),
                      "kms": h.get("SSEKMSKeyId")}))
except s3.exceptions.ClientError as e:
    if e.response["Error"]["Code"] in ("404", "NoSuchKey"):
        print("null")
    else:
        raise
"#,
            &[bucket, key],
            "",
        );
        if value.is_null() {
            return None;
        }
        let text = |name: &str| value[name].as_str().map(str::to_owned);
        Some(ObjectHead {
            size: value["size"].as_u64().unwrap_or(0),
            server_side_encryption: text("sse"),
            kms_key_id: text("kms"),
        })
    }

    /// The object's bytes, or `None` when there is no such object.
    pub fn get_object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let value = self.boto3(
            r#"
import base64
try:
    body = s3.get_object(Bucket=args[0], Key=args[1])["Body"].read()
    print(json.dumps(base64.b64encode(body).decode()))
except s3.exceptions.NoSuchKey:
    print("null")
"#,
            &[bucket, key],
            "",
        );
        let encoded = value.as_str()?;
        use base64::Engine as _;
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .expect("base64 from python"),
        )
    }

    /// Puts objects with the same body under each of `keys` (in one Python
    /// process, so thousands are quick).
    pub fn put_objects(&self, bucket: &str, keys: &[String], body: &[u8]) {
        let input = serde_json::json!({ "keys": keys, "body": String::from_utf8_lossy(body) });
        self.boto3(
            r#"
from concurrent.futures import ThreadPoolExecutor
data = json.load(sys.stdin)
body = data["body"].encode()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda key: s3.put_object(Bucket=args[0], Key=key, Body=body), data["keys"]))
print(json.dumps(len(data["keys"])))
"#,
            &[bucket],
            &input.to_string(),
        );
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
