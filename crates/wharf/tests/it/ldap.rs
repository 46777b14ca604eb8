//! The ldap identity provider through the binary, against a real OpenLDAP
//! slapd over LDAPS with a private CA: OpenSSH password and key logins
//! landing in the mapped home, FTPS with curl, `allowed_groups`, and
//! `test-idp` for both kinds of login.

use std::process::{Command, Stdio};

use wharf_test_support::ldap::{SUFFIX, Slapd};

use crate::*;

const SERVICE_DN: &str = "cn=wharf,ou=services,dc=example,dc=com";
const SERVICE_PASSWORD: &str = "svc-Secret-77";

fn person(uid: &str, keys: &[&str]) -> String {
    let department = format!("dept-{uid}");
    wharf_test_support::ldap::person(
        uid,
        "ou=people",
        1001,
        keys,
        &[("departmentNumber", &department)],
    )
}

fn directory(alice_key: &str) -> Slapd {
    let slapd = Slapd::start();
    slapd.add(&format!(
        "dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: wharf
userPassword: {SERVICE_PASSWORD}

{alice}{mallory}dn: cn=transfer,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: transfer
member: uid=alice,ou=people,{SUFFIX}
",
        alice = person("alice", &[alice_key]),
        mallory = person("mallory", &[]),
    ));
    slapd
}

#[test]
fn directory_users_log_in_over_sftp_and_ftps_and_test_idp_explains_them() {
    let (key, public) = ssh_key("client_alice");
    let slapd = directory(&public);
    let wharf = prepare(&format!(
        r#"[protocols.ftps]
listen = "127.0.0.1:0"

[identity_provider]
type = "ldap"
url = "{url}"
ca_file = "{ca}"
service_bind_dn = "{SERVICE_DN}"
service_bind_password = "{SERVICE_PASSWORD}"
search_base = "ou=people,{SUFFIX}"
allowed_groups = ["cn=transfer,ou=groups,{SUFFIX}"]

[identity_provider.attributes]
HomeDirectory = "homeDirectory"
PublicKeys = "sshPublicKey"
SessionTags = {{ department = "departmentNumber" }}
"#,
        url = slapd.ldaps_url(),
        ca = slapd.ca_file().display(),
    ));
    let check = wharf.cli(&["check-config"], None);
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let wharf = wharf.start();
    let dir = wharf.dir.path();

    // Password (search, then bind as the entry) and key (search only).
    std::fs::write(dir.join("f.txt"), b"from the directory").unwrap();
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Password("alice-Pass-1".into()),
        "put f.txt\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(wharf.path("files/alice/f.txt")).unwrap(),
        b"from the directory"
    );
    let out = sftp_batch(
        wharf.sftp_port(),
        "alice",
        &Login::Key(key),
        "get f.txt back.txt\n",
        dir,
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(dir.join("back.txt")).unwrap(),
        b"from the directory"
    );

    // FTPS, the same user and home.
    let ftps = wharf.ftps.unwrap();
    let list = Command::new("curl")
        .args(["-s", "-S", "--max-time", "60", "--ssl-reqd", "-k"])
        .args(["--user", "alice:alice-Pass-1"])
        .arg(format!("ftp://127.0.0.1:{}/", ftps.port()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(stdout(&list).contains("f.txt"), "{}", stderr(&list));

    // A wrong password, and a valid directory user outside allowed_groups.
    for (user, password) in [("alice", "wrong"), ("mallory", "mallory-Pass-1")] {
        let out = sftp_batch(
            wharf.sftp_port(),
            user,
            &Login::Password(password.into()),
            "ls\n",
            dir,
            &[],
        );
        assert!(!out.status.success(), "{user} logged in");
    }
    wharf.wait_for_auth_failure("mallory", "allowed_groups");

    // test-idp: the same questions, answered with the resolved session.
    let by_password = wharf.cli(
        &["test-idp", "--user", "alice", "--password-stdin"],
        Some("alice-Pass-1\n"),
    );
    assert_eq!(
        by_password.status.code(),
        Some(0),
        "{}",
        stdout(&by_password)
    );
    let answer: serde_json::Value = serde_json::from_slice(&by_password.stdout).unwrap();
    assert_eq!(answer["Response"]["HomeDirectory"], "/default/alice");
    assert_eq!(answer["Session"]["SessionTags"]["department"], "dept-alice");
    let key_file = format!("{}.pub", ssh_key("client_alice").0.display());
    let by_key = wharf.cli(
        &["test-idp", "--user", "alice", "--public-key", &key_file],
        None,
    );
    assert_eq!(by_key.status.code(), Some(0), "{}", stdout(&by_key));
    let outsider = wharf.cli(
        &["test-idp", "--user", "mallory", "--password-stdin"],
        Some("mallory-Pass-1\n"),
    );
    assert_eq!(outsider.status.code(), Some(3), "{}", stdout(&outsider));
    // The service account's password never reaches a log.
    let log = std::fs::read_to_string(wharf.path("audit.log")).unwrap();
    assert!(!log.contains(SERVICE_PASSWORD) && !log.contains("alice-Pass-1"));
}
