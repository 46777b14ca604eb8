//! SFTP on an S3 store (a real moto_server), checked from the outside with
//! boto3.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wharf_test_support::s3::S3Server;

use crate::*;

fn s3_wharf(moto: &S3Server, extra: &str) -> Wharf {
    let wharf = prepare_s3_wharf(moto, extra);
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &["--home-directory-mapping", "/=/reports/alice"],
    );
    wharf.start()
}

/// wharf with the store `reports` on moto's `transfer-bucket`, no users yet.
fn prepare_s3_wharf(moto: &S3Server, extra: &str) -> Wharf {
    moto.create_bucket("transfer-bucket");
    let config = format!(
        r#"[server]
data_dir = "data"
host_keys = ["{host_key}"]

[protocols.sftp]
listen = "127.0.0.1:0"

[storage.reports]
kind = "s3"
bucket = "transfer-bucket"
endpoint = "{endpoint}"
region = "us-east-1"
path_style = true
access_key_id = "test"
secret_access_key = "test-secret"
server_side_encryption = "AES256"
upload_part_size = "5MiB"
upload_concurrency = 2
{extra}
"#,
        host_key = wharf_test_support::wharf::host_key().display(),
        endpoint = moto.endpoint(),
    );
    Wharf::prepare(binary(), &config)
}

fn write_random(path: &Path, len: usize) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(path, &data).unwrap();
    data
}

#[test]
fn sftp_on_s3_with_transfer_family_semantics() {
    let moto = S3Server::start();
    let wharf = s3_wharf(&moto, "");
    let dir = wharf.dir.path();
    let small = write_random(&dir.join("small.bin"), 100_000);
    let big = write_random(&dir.join("big.bin"), 12 * 1024 * 1024 + 17);
    let login = Login::Password("alice-pw".into());
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &login,
        "put small.bin\nput big.bin\nmkdir docs\nput small.bin docs/s.bin\nls -l\nls docs\nrename docs/s.bin docs/t.bin\nget big.bin big.back\nget docs/t.bin t.back\n-rename docs renamed\nchmod 600 small.bin\nrm docs/t.bin\nrmdir docs\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(std::fs::read(dir.join("big.back")).unwrap(), big);
    assert_eq!(std::fs::read(dir.join("t.back")).unwrap(), small);
    // What landed in the bucket, seen by boto3.
    let keys = moto.list_keys("transfer-bucket", "alice/");
    assert_eq!(keys, ["alice/big.bin", "alice/small.bin"], "{keys:?}");
    let head = moto
        .head_object("transfer-bucket", "alice/big.bin")
        .unwrap();
    assert_eq!(head.size, big.len() as u64);
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));
    assert!(moto.multipart_uploads("transfer-bucket").is_empty());
    // Directory rename is refused with a clear message; setstat is a no-op.
    wharf.wait_for_log("SETSTAT", |l| l["activity-type"] == "SETSTAT");
    assert!(
        stderr(&out).to_lowercase().contains("unsupported"),
        "{}",
        stderr(&out)
    );
    assert!(keys.iter().all(|k| !k.starts_with("alice/renamed")));
}

#[test]
fn mkdir_writes_a_marker_and_paramiko_checks_pass() {
    let moto = S3Server::start();
    let wharf = s3_wharf(&moto, "");
    let out = wharf_test_support::wharf::python(
        &py("sftp_checks.py"),
        &[
            &wharf.sftp_port().to_string(),
            "alice",
            "alice-pw",
            "files",
            "concurrency",
            "flood",
        ],
    );
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let ops = wharf_test_support::wharf::python(
        &py("ops.py"),
        &[
            &wharf.sftp_port().to_string(),
            "alice",
            "alice-pw",
            "mkdir:/empty:ok",
            "stat:/empty:ok",
            "ls:/empty:ok",
            "put:/empty/inner.txt:ok",
            "rmdir:/empty:failed",
            "rm:/empty/inner.txt:ok",
            "rmdir:/empty:ok",
            "get:/missing.txt:missing",
        ],
    );
    assert!(ops.status.success(), "{}\n{}", stdout(&ops), stderr(&ops));
    // mkdir wrote the zero-byte marker, rmdir removed it.
    let keys = moto.list_keys("transfer-bucket", "alice/");
    assert!(
        !keys.iter().any(|k| k.starts_with("alice/empty")),
        "{keys:?}"
    );
    assert!(moto.multipart_uploads("transfer-bucket").is_empty());
}

#[test]
fn a_dropped_upload_leaves_no_object_and_no_multipart_upload() {
    let moto = S3Server::start();
    let wharf = s3_wharf(&moto, "");
    let dir = wharf.dir.path();
    write_random(&dir.join("huge.bin"), 64 * 1024 * 1024);
    let batch = dir.join("batch");
    std::fs::write(&batch, "put huge.bin\n").unwrap();
    // Start a bandwidth-limited upload (sftp -l, 16 Mbit/s), wait until its
    // multipart upload exists, then kill the client by PID mid-transfer.
    let (key, _) = ssh_key("client_alice");
    wharf.cli(
        &[
            "user",
            "add-key",
            "alice",
            &std::fs::read_to_string(format!("{}.pub", key.display())).unwrap(),
        ],
        None,
    );
    let mut client = Command::new("sftp")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&key)
        .args(["-l", "16000", "-P", &wharf.sftp_port().to_string(), "-b"])
        .arg(&batch)
        .arg("alice@127.0.0.1")
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto.multipart_uploads("transfer-bucket").is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        assert!(
            client.try_wait().unwrap().is_none(),
            "the upload finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    client.kill().unwrap();
    client.wait().unwrap();
    wharf.wait_for_log("PARTIAL_CLOSE", |l| l["activity-type"] == "PARTIAL_CLOSE");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !moto.multipart_uploads("transfer-bucket").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the multipart upload was not aborted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(moto.list_keys("transfer-bucket", "alice/").is_empty());
}

/// s3:ExistingObjectTag (S3 User Guide, "Tagging and access control
/// policies"): a scope-down policy lets alice read only objects tagged
/// classification=public; the tags are S3's own, read with GetObjectTagging.
/// SIGTERM with an upload in progress: after `shutdown_grace` the upload is
/// aborted in the store before the process exits (SPEC 2): neither an
/// object nor a multipart upload is left behind.
#[test]
fn sigterm_aborts_an_unfinished_s3_upload_before_exiting() {
    let moto = S3Server::start();
    let wharf = prepare_s3_wharf(&moto, "");
    wharf.add_server_keys("shutdown_grace = \"1s\"");
    let (key, public) = ssh_key("client_alice");
    wharf.add_user(
        "alice",
        None,
        &[
            "--ssh-key",
            &public,
            "--home-directory-mapping",
            "/=/reports/alice",
        ],
    );
    let mut wharf = wharf.start();
    let dir = wharf.dir.path().to_owned();
    write_random(&dir.join("huge.bin"), 64 * 1024 * 1024);
    std::fs::write(dir.join("batch"), "put huge.bin\n").unwrap();
    // A slow upload (16 Mbit/s) that cannot finish within the grace.
    let mut client = Command::new("sftp")
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
        ])
        .arg(&key)
        .args(["-l", "16000", "-P", &wharf.sftp_port().to_string(), "-b"])
        .arg(dir.join("batch"))
        .arg("alice@127.0.0.1")
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto.multipart_uploads("transfer-bucket").is_empty() {
        assert!(Instant::now() < deadline, "no multipart upload started");
        assert!(client.try_wait().unwrap().is_none(), "the upload finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = wharf.signal_and_wait("TERM");
    assert!(status.success(), "{status:?}");
    // Checked right after the exit, without waiting: nothing is left.
    assert!(moto.multipart_uploads("transfer-bucket").is_empty());
    assert!(moto.list_keys("transfer-bucket", "alice/").is_empty());
    assert!(!wharf.activities("PARTIAL_CLOSE").is_empty());
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn reads_are_decided_by_existing_object_tags() {
    let moto = S3Server::start();
    let wharf = prepare_s3_wharf(&moto, "");
    let policy = wharf.dir.path().join("public-only.json");
    std::fs::write(
        &policy,
        r#"{"Version":"2012-10-17","Statement":[
  {"Sid":"List","Effect":"Allow","Action":"s3:ListBucket","Resource":"arn:aws:s3:::reports"},
  {"Sid":"Write","Effect":"Allow","Action":["s3:PutObject","s3:DeleteObject"],"Resource":"arn:aws:s3:::reports/alice/*"},
  {"Sid":"ReadPublic","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::reports/alice/*",
   "Condition":{"StringEquals":{"s3:ExistingObjectTag/classification":"public"}}}]}"#,
    )
    .unwrap();
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &[
            "--home-directory-mapping",
            "/=/reports/alice",
            "--policy",
            &format!("@{}", policy.display()),
        ],
    );
    let wharf = wharf.start();
    moto.boto3(
        r#"
for key, tagging in [("alice/public.txt", "classification=public"),
                     ("alice/secret.txt", "classification=secret&owner=public"),
                     ("alice/plain.txt", None)]:
    extra = {"Tagging": tagging} if tagging else {}
    s3.put_object(Bucket="transfer-bucket", Key=key, Body=b"x", **extra)
print(json.dumps(True))
"#,
        &[],
        "",
    );
    let ops = wharf_test_support::wharf::python(
        &py("ops.py"),
        &[
            &wharf.sftp_port().to_string(),
            "alice",
            "alice-pw",
            "get:/public.txt:ok",
            "get:/secret.txt:denied",
            "get:/plain.txt:denied",
            // A missing object has no tags: denied, not "no such file".
            "get:/missing.txt:denied",
            // Rename reads the source too.
            "mv:/secret.txt>/moved.txt:denied",
            "mv:/public.txt>/moved.txt:ok",
            "put:/new.txt:ok",
            "get:/new.txt:denied",
        ],
    );
    assert!(ops.status.success(), "{}\n{}", stdout(&ops), stderr(&ops));
    let denied = wharf.wait_for_log("ACCESS_DENIED", |l| {
        l["activity-type"] == "ACCESS_DENIED" && l["path"] == "/secret.txt"
    });
    assert!(
        denied["message"]
            .as_str()
            .is_some_and(|m| m.contains("s3:GetObject")),
        "{denied}"
    );
    let keys = moto.list_keys("transfer-bucket", "alice/");
    assert!(keys.contains(&"alice/moved.txt".to_owned()), "{keys:?}");
    assert!(keys.contains(&"alice/secret.txt".to_owned()), "{keys:?}");
}

#[test]
fn ftps_on_s3_with_curl() {
    // The FTPS front-end on the S3 store: a multipart upload, a `dir/`
    // marker, a listing, a ranged download, a rename (copy + delete).
    let moto = S3Server::start();
    let wharf = s3_wharf(
        &moto,
        "[protocols.ftps]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"41200-41300\"\n",
    );
    let dir = wharf.dir.path();
    let big = write_random(&dir.join("big.bin"), 12 * 1024 * 1024 + 17);
    let base = format!("ftp://127.0.0.1:{}/", wharf.ftps.unwrap().port());
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "-S", "--max-time", "60", "--ssl-reqd", "-k"])
            .args(["--user", "alice:alice-pw"])
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    curl(&["-T", "big.bin", &format!("{base}big.bin")]);
    curl(&["-Q", "MKD docs", &base]);
    let listing = curl(&[&base]);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('-') && l.ends_with(" big.bin")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('d') && l.ends_with(" docs")),
        "{listing}"
    );
    curl(&["-o", "big.back", &format!("{base}big.bin")]);
    assert_eq!(std::fs::read(dir.join("big.back")).unwrap(), big);
    // `-C -` on a partial copy: SIZE, REST, then a ranged read.
    std::fs::write(dir.join("part.back"), &big[..1_000_000]).unwrap();
    curl(&["-C", "-", "-o", "part.back", &format!("{base}big.bin")]);
    assert_eq!(std::fs::read(dir.join("part.back")).unwrap(), big);
    curl(&["-Q", "RNFR big.bin", "-Q", "RNTO docs/moved.bin", &base]);

    let keys = moto.list_keys("transfer-bucket", "alice/");
    assert_eq!(keys, ["alice/docs/", "alice/docs/moved.bin"], "{keys:?}");
    let head = moto
        .head_object("transfer-bucket", "alice/docs/moved.bin")
        .unwrap();
    assert_eq!(head.size, big.len() as u64);
    assert_eq!(
        moto.get_object("transfer-bucket", "alice/docs/moved.bin")
            .unwrap(),
        big
    );
    assert!(moto.multipart_uploads("transfer-bucket").is_empty());
    assert_eq!(head.server_side_encryption.as_deref(), Some("AES256"));
    let log = wharf.log();
    assert!(
        log.iter()
            .any(|l| l["activity-type"] == "CLOSE" && l["protocol"] == "FTPS"),
        "{log:?}"
    );
}
