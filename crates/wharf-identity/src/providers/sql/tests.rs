#![allow(clippy::unwrap_used)]

use super::*;

const SECRET_URL: &str = "postgres://wharf:db-s3cret@127.0.0.1:5432/users";
const SALT: &str = "salt-s3cret";

fn config(database: &str, query: &str) -> SqlConfig {
    SqlConfig {
        database: database.into(),
        query: query.into(),
        ..SqlConfig::default()
    }
}

#[track_caller]
fn refused(config: SqlConfig, expected: &str) {
    let error = SqlProvider::new(config, Duration::from_secs(5))
        .expect_err("the configuration must be refused")
        .0;
    assert!(
        error.starts_with(expected),
        "{error:?} does not start with {expected:?}"
    );
    assert!(
        !error.contains("db-s3cret") && !error.contains(SALT),
        "{error}"
    );
}

#[test]
fn configurations_are_checked_without_io() {
    let query = "SELECT * FROM users WHERE username = $1";
    // Nothing listens there, and nothing is asked: only parsing.
    SqlProvider::new(config(SECRET_URL, query), Duration::from_secs(5)).unwrap();
    SqlProvider::new(
        config("sqlite:///nonexistent/dir/users.db", query),
        Duration::from_secs(5),
    )
    .unwrap();
    let salted = SqlConfig {
        password_salt: SALT.into(),
        ..config(SECRET_URL, "SELECT 1 FROM t WHERE u = $1 AND d = $2")
    };
    SqlProvider::new(salted.clone(), Duration::from_secs(5)).unwrap();

    refused(config("", query), "database: required");
    refused(
        config("users.db", query),
        "database: \"users.db\" must start with postgres://",
    );
    refused(
        config("mysql://wharf:db-s3cret@db/users", query),
        "database: \"mysql://wharf:***@db/users\" must start with postgres://",
    );
    refused(
        config("postgres://wharf:db-s3cret@db:port/users", query),
        "database: \"postgres://***@db:port/users\" is not a PostgreSQL URL",
    );
    refused(config(SECRET_URL, "  "), "query: required");
    refused(
        config(SECRET_URL, "SELECT * FROM users"),
        "query: must use $1",
    );
    refused(
        config(SECRET_URL, "SELECT * FROM users WHERE name = '$1'"),
        "query: must use $1",
    );
    refused(
        config(SECRET_URL, "SELECT * FROM users WHERE a = $1 AND b = $2"),
        "query: uses $2",
    );
    refused(
        config(SECRET_URL, "SELECT * FROM users WHERE a = $1 AND b = $10"),
        "query: uses $10",
    );
    refused(
        SqlConfig {
            password_salt: SALT.into(),
            ..config(SECRET_URL, query)
        },
        "query: must use $2",
    );
    refused(
        SqlConfig {
            password_salt: SALT.into(),
            password_hash_column: "hash".into(),
            ..salted.clone()
        },
        "password_salt: cannot be combined",
    );
    refused(
        SqlConfig {
            password_hash_column: "publickeys".into(),
            ..config(SECRET_URL, query)
        },
        "password_hash_column: \"publickeys\" is a response field",
    );
    let error = SqlProvider::new(config(SECRET_URL, query), Duration::ZERO).unwrap_err();
    assert!(error.0.starts_with("timeout"), "{error}");
}

#[test]
fn unknown_keys_are_refused_and_defaults_apply() {
    let parsed: SqlConfig =
        toml::from_str("database = \"sqlite://users.db\"\nquery = \"SELECT 1 WHERE $1 = $1\"\n")
            .unwrap();
    assert_eq!(parsed.password_hash_column, "");
    assert_eq!(parsed.password_salt, "");
    let error = toml::from_str::<SqlConfig>("database = \"x\"\ntimeout = \"5s\"\n").unwrap_err();
    assert!(
        error.to_string().contains("unknown field `timeout`"),
        "{error}"
    );
}

#[test]
fn debug_shows_no_secret() {
    let config = SqlConfig {
        password_salt: SALT.into(),
        ..config(SECRET_URL, "SELECT 1 WHERE $1 = $1 AND $2 = $2")
    };
    let shown = format!("{config:?}");
    assert!(
        shown.contains("postgres://wharf:***@127.0.0.1:5432/users"),
        "{shown}"
    );
    let provider = SqlProvider::new(config, Duration::from_secs(5)).unwrap();
    for text in [shown, format!("{provider:?}")] {
        assert!(
            !text.contains("db-s3cret") && !text.contains(SALT),
            "{text}"
        );
    }
}

#[test]
fn placeholders_outside_literals_and_comments() {
    let check = |query: &str, expected: &[u64]| {
        assert_eq!(
            placeholders(query).into_iter().collect::<Vec<_>>(),
            expected,
            "{query}"
        );
    };
    check("SELECT * FROM t WHERE a = $1", &[1]);
    check(
        "SELECT * FROM t WHERE a=$1 AND ($2 IS NULL OR d=$2)",
        &[1, 2],
    );
    check(
        "SELECT '$3', \"$4\" FROM t WHERE a = $1 -- $5\n AND b = $2 /* $6 */",
        &[1, 2],
    );
    check("SELECT 'it''s $7' WHERE x = $1", &[1]);
    check("SELECT $ FROM t", &[]);
}

#[test]
fn the_salted_digest_is_lowercase_hex_sha256_of_salt_password_username() {
    // printf '%s' 'saltpasswordalice' | sha256sum
    assert_eq!(
        salted_digest("salt", "password", "alice"),
        "19329fbdca49c8f26b3ec0e058ce514022b11cbd2761480db2fe133e5fb155aa"
    );
    // UTF-8 bytes: printf '%s' 'sälté✓alice@example.com' | sha256sum
    assert_eq!(
        salted_digest("säl", "té✓", "alice@example.com"),
        "e72b8f44f21aef965a6cb7ef4d15d0a062eb644900dcdb5dfc011ceffb30af1c"
    );
}

fn record(columns: Vec<(&str, Cell)>) -> Record {
    Record {
        columns: columns
            .into_iter()
            .map(|(name, cell)| (name.to_owned(), cell))
            .collect(),
    }
}

fn text(value: &str) -> Cell {
    Cell::Text(value.to_owned())
}

#[test]
fn columns_map_to_response_fields() {
    let built = build_response(
        record(vec![
            ("username", text("alice")),
            ("pw", text("$2b$04$secret-hash")),
            ("role", text("transfer-users")),
            ("homedirectory", text("/default/alice")),
            ("Policy", Cell::Null),
            (
                "SessionTags",
                Cell::Json(serde_json::json!({"team": "blue"})),
            ),
            ("PosixProfile", text("{\"Uid\": 1000, \"Gid\": 1000}")),
            (
                "PublicKeys",
                text("# laptop\nssh-ed25519 AAAA one\n\n  ssh-ed25519 AAAA two  \n"),
            ),
            ("HomeDirectoryType", text("")),
        ]),
        Some("PW"),
    )
    .unwrap();
    assert_eq!(
        Value::Object(built.response.clone()),
        serde_json::json!({
            "Role": "transfer-users",
            "HomeDirectory": "/default/alice",
            "SessionTags": {"team": "blue"},
            "PosixProfile": {"Uid": 1000, "Gid": 1000},
            "PublicKeys": ["ssh-ed25519 AAAA one", "ssh-ed25519 AAAA two"],
        })
    );
    assert!(matches!(built.hash, HashCell::Text(ref h) if h == "$2b$04$secret-hash"));
    assert_eq!(built.unknown, vec!["username".to_owned()]);
    let warning = unknown_warning("sql", &built.unknown).unwrap();
    assert!(
        warning.contains("\"username\"") && !warning.contains("alice"),
        "{warning}"
    );

    // An exact match of the hash column wins; the other is just a column.
    let built = build_response(
        record(vec![("pw", text("a")), ("PW", text("b"))]),
        Some("PW"),
    )
    .unwrap();
    assert!(matches!(built.hash, HashCell::Text(ref h) if h == "b"));
    assert_eq!(built.unknown, vec!["pw".to_owned()]);

    let absent = build_response(record(vec![("pw", Cell::Null)]), Some("pw")).unwrap();
    assert!(matches!(absent.hash, HashCell::Absent));
    let missing = build_response(record(vec![("x", Cell::Null)]), Some("pw")).unwrap();
    assert!(matches!(missing.hash, HashCell::Missing));
    let not_text = build_response(
        record(vec![("pw", Cell::Unsupported("BYTEA".into()))]),
        Some("pw"),
    )
    .unwrap();
    assert!(matches!(not_text.hash, HashCell::NotText(ref t) if t == "BYTEA"));
    let list = build_response(
        record(vec![(
            "PublicKeys",
            Cell::List(vec!["ssh-ed25519 AAAA k".into()]),
        )]),
        None,
    )
    .unwrap();
    assert_eq!(
        list.response["PublicKeys"],
        serde_json::json!(["ssh-ed25519 AAAA k"])
    );
    let json_keys = build_response(
        record(vec![("publickeys", text("[\"ssh-ed25519 AAAA k\"]"))]),
        None,
    )
    .unwrap();
    assert_eq!(
        json_keys.response["PublicKeys"],
        serde_json::json!(["ssh-ed25519 AAAA k"])
    );
}

#[test]
fn unreadable_rows_say_why() {
    let error = |columns| build_response(record(columns), Some("pw")).err().unwrap();
    assert!(error(vec![("Role", text("a")), ("ROLE", text("b"))]).contains("more than one Role"));
    assert!(error(vec![("pw", text("a")), ("pw", text("b"))]).contains("\"pw\" twice"));
    assert!(
        error(vec![("HomeDirectory", Cell::Unsupported("UUID".into()))])
            .contains("type UUID, which wharf does not read")
    );
    assert!(error(vec![("PosixProfile", text("{uid"))]).contains("PosixProfile is not JSON"));
}
