//! IAM policies end to end: one shared role narrowed by scope-down
//! policies, and ABAC folders opened by role tags and by SessionTags.

use crate::*;

/// Runs `ops.py` as `user` and asserts every outcome.
fn check(wharf: &Wharf, user: &str, password: &str, specs: &[&str]) {
    let port = wharf.sftp_port().to_string();
    let mut args = vec![port.as_str(), user, password];
    args.extend_from_slice(specs);
    let out = wharf_test_support::wharf::python(&py("ops.py"), &args);
    let denials: Vec<String> = wharf
        .activities("ACCESS_DENIED")
        .iter()
        .map(|l| format!("{} {}: {}", l["path"], l["message"], l["reason"]))
        .collect();
    assert!(
        out.status.success(),
        "{}\n{}\ndenials:\n{}",
        stdout(&out),
        stderr(&out),
        denials.join("\n")
    );
}

pub(crate) const SHARED_ROLE: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Sid": "WholeStore", "Effect": "Allow", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::default", "arn:aws:s3:::default/*"]}]}"#;

/// The AWS Transfer Family scope-down policy, as the docs write it.
pub(crate) const SCOPE_DOWN: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Sid": "AllowListingOfUserFolder", "Effect": "Allow", "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::${transfer:HomeBucket}",
     "Condition": {"StringLike": {"s3:prefix": ["${transfer:HomeFolder}/*", "${transfer:HomeFolder}"]}}},
    {"Sid": "HomeDirObjectAccess", "Effect": "Allow",
     "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
     "Resource": "arn:aws:s3:::${transfer:HomeDirectory}/*"}]}"#;

/// Folders of the `shared` store open by principal tag.
const ABAC_BUCKET: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Sid": "TeamFolders", "Effect": "Allow", "Principal": "*",
     "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:aws:s3:::shared/team-${aws:PrincipalTag/team}/*",
     "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/*"}}},
    {"Sid": "ListTeamFolders", "Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::shared",
     "Condition": {"StringLike": {"s3:prefix": ["team-${aws:PrincipalTag/team}/*", "team-${aws:PrincipalTag/team}"]}}},
    {"Sid": "DepartmentFolders", "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject"],
     "Resource": "arn:aws:s3:::shared/dept-${aws:PrincipalTag/department}/*"},
    {"Sid": "ListDepartmentFolders", "Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::shared",
     "Condition": {"StringLike": {"s3:prefix": ["dept-${aws:PrincipalTag/department}/*"]}}},
    {"Sid": "NobodyDeletes", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
     "Resource": "arn:aws:s3:::shared/*"}]}"#;

/// Adds `user` (password `USER-pw`, PATH home `/default/home/USER`, role
/// `transfer`) under the scope-down policy, with `extra` arguments.
pub(crate) fn add_scoped_user(wharf: &Wharf, user: &str, extra: &[&str]) {
    std::fs::write(wharf.path("scope-down.json"), SCOPE_DOWN).unwrap();
    let scope = format!("@{}", wharf.path("scope-down.json").display());
    let home = format!("/default/home/{user}");
    let mut args = vec![
        "--home-directory",
        &home,
        "--role",
        "transfer",
        "--policy",
        &scope,
    ];
    args.extend_from_slice(extra);
    wharf.add_user(user, Some(&format!("{user}-pw")), &args);
}

fn server() -> Wharf {
    let wharf = prepare(
        r#"
[storage.shared]
kind = "filesystem"
root = "shared"
bucket_policy = "abac-bucket.json"

[roles.transfer]
policies = ["shared-role.json"]
tags = { department = "finance" }
"#,
    );
    std::fs::write(wharf.path("shared-role.json"), SHARED_ROLE).unwrap();
    std::fs::write(wharf.path("abac-bucket.json"), ABAC_BUCKET).unwrap();
    for (user, team) in [("alice", "blue"), ("bob", "red")] {
        add_scoped_user(&wharf, user, &["--tag", &format!("team={team}")]);
    }
    // carol has the role but no scope-down policy and no tags.
    wharf.add_user(
        "carol",
        Some("carol-pw"),
        &[
            "--home-directory",
            "/default/home/carol",
            "--role",
            "transfer",
        ],
    );
    wharf.start()
}

#[test]
fn one_shared_role_and_a_scope_down_policy_confine_each_user() {
    let wharf = server();
    check(
        &wharf,
        "alice",
        "alice-pw",
        &[
            "put:/default/home/alice/a.txt:ok",
            "get:/default/home/alice/a.txt:ok",
            "ls:/default/home/alice:ok",
            "mkdir:/default/home/alice/sub:ok",
            "put:/default/home/bob/intrusion.txt:denied",
            // Above the home: the way home only (SPEC 3), not bob's.
            "ls:/default/home:=alice",
            "ls:/default:=home",
            "stat:/default/home:ok",
        ],
    );
    check(
        &wharf,
        "bob",
        "bob-pw",
        &[
            "put:/default/home/bob/b.txt:ok",
            "get:/default/home/alice/a.txt:denied",
            "ls:/default/home/alice:denied",
            "rm:/default/home/alice/a.txt:denied",
            "rm:/default/home/bob/b.txt:ok",
        ],
    );
    // Without a scope-down policy the shared role reaches the whole store.
    check(
        &wharf,
        "carol",
        "carol-pw",
        &["get:/default/home/alice/a.txt:ok", "ls:/default/home:ok"],
    );
    assert!(wharf.path("files/home/alice/a.txt").exists());
    assert!(!wharf.path("files/home/bob/intrusion.txt").exists());
    let denied = wharf.wait_for_log("bob's denial", |l| {
        l["activity-type"] == "ACCESS_DENIED"
            && l["user"] == "bob"
            && l["path"] == "/default/home/alice/a.txt"
    });
    assert!(
        denied["reason"]
            .as_str()
            .unwrap()
            .contains("the session policy does not allow it"),
        "{denied}"
    );
}

#[test]
fn session_tags_and_role_tags_open_abac_folders() {
    let wharf = server();
    check(
        &wharf,
        "alice",
        "alice-pw",
        &[
            "put:/shared/team-blue/plan.txt:ok",
            "get:/shared/team-blue/plan.txt:ok",
            "ls:/shared/team-blue:ok",
            "put:/shared/team-red/spy.txt:denied",
            "ls:/shared/team-red:denied",
            // The role's tag opens the department folder to every user of the role.
            "put:/shared/dept-finance/report.txt:ok",
            "put:/shared/dept-sales/report.txt:denied",
            // An explicit Deny in the bucket policy beats every Allow.
            "rm:/shared/team-blue/plan.txt:denied",
        ],
    );
    check(
        &wharf,
        "bob",
        "bob-pw",
        &[
            "get:/shared/team-blue/plan.txt:denied",
            "put:/shared/team-red/r.txt:ok",
            "get:/shared/dept-finance/report.txt:ok",
        ],
    );
    // No team tag: no team folder at all.
    check(
        &wharf,
        "carol",
        "carol-pw",
        &[
            "put:/shared/team-blue/c.txt:denied",
            "put:/shared/team-/c.txt:denied",
        ],
    );
    assert!(wharf.path("shared/team-blue/plan.txt").exists());
    assert!(!wharf.path("shared/team-red/spy.txt").exists());
    // A change to a user's tags takes effect at the next login.
    assert!(wharf.cli(&["user", "remove", "bob"], None).status.success());
    let scope = format!("@{}", wharf.path("scope-down.json").display());
    wharf.add_user(
        "bob",
        Some("bob-pw"),
        &[
            "--home-directory",
            "/default/home/bob",
            "--role",
            "transfer",
            "--policy",
            &scope,
            "--tag",
            "team=blue",
        ],
    );
    check(
        &wharf,
        "bob",
        "bob-pw",
        &[
            "get:/shared/team-blue/plan.txt:ok",
            "put:/shared/team-red/r2.txt:denied",
        ],
    );
}

/// A role that may do everything in the user's folder, except read what is
/// under `projects/secret/` and write HTML under `published/`.
const DENIES_INSIDE: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::default", "arn:aws:s3:::default/*"]},
    {"Effect": "Deny", "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::default/${transfer:UserName}/projects/secret/*"},
    {"Effect": "Deny", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::default/${transfer:UserName}/published/*.html"}]}"#;

/// A directory rename moves everything below it: over SFTP rename,
/// posix-rename and FTP RNFR/RNTO it is refused when any object inside
/// could not be moved on its own (issue: renaming `projects` exposed
/// `projects/secret`, renaming into `published/` bypassed a Deny).
#[test]
fn a_directory_rename_obeys_the_policy_of_everything_it_moves() {
    let ports = wharf_test_support::tools::free_port_range(20);
    let wharf = prepare(&format!(
        "[roles.limited]\npolicies = [\"limited.json\"]\n\n[protocols.ftps]\nlisten = \"127.0.0.1:0\"\npassive_ports = \"{ports}\"\n"
    ));
    std::fs::write(wharf.path("limited.json"), DENIES_INSIDE).unwrap();
    wharf.add_user(
        "alice",
        Some("alice-pw"),
        &[
            "--home-directory-mapping",
            "/=/default/alice",
            "--role",
            "limited",
        ],
    );
    let wharf = wharf.start();
    let home = wharf.path("files/alice");
    std::fs::create_dir_all(home.join("projects/secret")).unwrap();
    std::fs::write(home.join("projects/secret/plan.txt"), b"the plan").unwrap();
    std::fs::create_dir_all(home.join("staging")).unwrap();
    std::fs::write(home.join("staging/evil.html"), b"<script>").unwrap();
    std::fs::create_dir_all(home.join("published")).unwrap();
    std::fs::create_dir_all(home.join("fine/sub")).unwrap();
    std::fs::write(home.join("fine/sub/ok.txt"), b"ok").unwrap();
    check(
        &wharf,
        "alice",
        "alice-pw",
        &[
            "get:/projects/secret/plan.txt:denied",
            "mv:/projects>/p2:denied",
            "rename:/projects>/p3:denied",
            "get:/p2/secret/plan.txt:missing",
            "put:/published/evil.html:denied",
            "mv:/staging>/published/staging:denied",
            "rename:/staging>/published/staging:denied",
            // Nothing forbidden inside: the rename works.
            "mv:/fine>/fine2:ok",
            "get:/fine2/sub/ok.txt:ok",
        ],
    );
    // FTP RNFR/RNTO, with curl.
    let ftps = wharf.ftps.unwrap();
    for (from, to) in [("projects", "p4"), ("staging", "published/staging")] {
        let out = std::process::Command::new("curl")
            .args(["-s", "-S", "--max-time", "30", "--ssl-reqd", "-k"])
            .args(["--user", "alice:alice-pw"])
            .args(["-Q", &format!("RNFR {from}"), "-Q", &format!("RNTO {to}")])
            .arg(format!("ftp://127.0.0.1:{}/", ftps.port()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "FTP rename of {from} was allowed");
        assert!(stderr(&out).contains("550"), "{}", stderr(&out));
    }
    assert_eq!(
        std::fs::read(home.join("projects/secret/plan.txt")).unwrap(),
        b"the plan"
    );
    assert!(!home.join("published/staging").exists());
    assert!(!home.join("p2").exists() && !home.join("p3").exists() && !home.join("p4").exists());
}

/// Download by name: GetObject on the folder, nothing else.
const READ_BY_NAME: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::default/${transfer:UserName}/*"}]}"#;

/// The AWS write-only drop box: list the folder and upload, never read.
const WRITE_ONLY: &str = r#"{"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::default",
     "Condition": {"StringLike": {"s3:prefix": ["${transfer:UserName}/*", "${transfer:UserName}"]}}},
    {"Effect": "Allow", "Action": "s3:PutObject",
     "Resource": "arn:aws:s3:::default/${transfer:UserName}/*"}]}"#;

/// Drop boxes work with real clients: stat is allowed by GetObject or by a
/// one-key listing, and fstat on an open handle needs no new decision (the
/// issue: paramiko's get() failed on its FSTAT with GetObject only).
#[test]
fn read_only_and_write_only_drop_boxes_work_with_real_clients() {
    let wharf = prepare(
        "[roles.reader]\npolicies = [\"reader.json\"]\n\n[roles.dropbox]\npolicies = [\"dropbox.json\"]\n",
    );
    std::fs::write(wharf.path("reader.json"), READ_BY_NAME).unwrap();
    std::fs::write(wharf.path("dropbox.json"), WRITE_ONLY).unwrap();
    for (user, role) in [("reader", "reader"), ("dropper", "dropbox")] {
        wharf.add_user(
            user,
            Some(&format!("{user}-pw")),
            &[
                "--home-directory-mapping",
                &format!("/=/default/{user}"),
                "--role",
                role,
            ],
        );
    }
    let wharf = wharf.start();
    std::fs::create_dir_all(wharf.path("files/reader")).unwrap();
    std::fs::write(wharf.path("files/reader/report.csv"), vec![b'r'; 300_000]).unwrap();
    std::fs::create_dir_all(wharf.path("files/dropper")).unwrap();
    std::fs::write(wharf.path("files/dropper/older.csv"), b"old").unwrap();
    check(
        &wharf,
        "reader",
        "reader-pw",
        &[
            "download:/report.csv:ok",
            "get:/report.csv:ok",
            "stat:/report.csv:ok",
            "stat:/missing.csv:missing",
            "ls:/:denied",
            "put:/new.csv:denied",
        ],
    );
    check(
        &wharf,
        "dropper",
        "dropper-pw",
        &[
            "put:/in.csv:ok",
            "stat:/in.csv:ok",
            "ls:/:=in.csv,older.csv",
            "get:/older.csv:denied",
            "download:/in.csv:denied",
            "rm:/in.csv:denied",
        ],
    );
    // The OpenSSH client too: a download by name, and an upload.
    let dir = wharf.dir.path();
    let out = sftp_batch(
        wharf.sftp_port(),
        "reader",
        &Login::Password("reader-pw".into()),
        "get report.csv report.back\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.join("report.back")).unwrap().len(),
        300_000
    );
    std::fs::write(dir.join("drop.csv"), b"dropped").unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "dropper",
        &Login::Password("dropper-pw".into()),
        "put drop.csv\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(wharf.path("files/dropper/drop.csv")).unwrap(),
        b"dropped"
    );
}
