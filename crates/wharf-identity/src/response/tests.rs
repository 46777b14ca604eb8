#![allow(clippy::unwrap_used)]
use super::*;
use serde_json::json;

fn context() -> ValidationContext {
    ValidationContext {
        stores: ["default", "reports"]
            .into_iter()
            .map(String::from)
            .collect(),
        roles: [(
            "readers".to_owned(),
            "arn:aws:iam::000000000000:role/readers".to_owned(),
        )]
        .into_iter()
        .collect(),
        check_policy: Some(std::sync::Arc::new(|policy: &Value| {
            if policy.get("Statement").is_some() {
                Ok(())
            } else {
                Err("no Statement".to_owned())
            }
        })),
    }
}

#[track_caller]
fn check(response: Value, expected: Result<&str, &str>) {
    let got = validate_response(&response, "alice", &context());
    match (got, expected) {
        (Ok(identity), Ok(home)) => assert_eq!(format!("{:?}", identity.home), home),
        (Err(reason), Err(part)) => assert!(reason.contains(part), "{reason:?} lacks {part:?}"),
        (got, expected) => panic!("got {got:?}, expected {expected:?}"),
    }
}

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test";

#[test]
fn valid_responses() {
    check(
        json!({"HomeDirectory": "/reports/${transfer:UserName}"}),
        Ok(r#"Path { store: "reports", prefix: "alice" }"#),
    );
    check(
        json!({"HomeDirectory": "/reports//a/./b/"}),
        Ok(r#"Path { store: "reports", prefix: "a/b" }"#),
    );
    check(
        json!({"HomeDirectory": "/reports"}),
        Ok(r#"Path { store: "reports", prefix: "" }"#),
    );
    check(
        json!({"HomeDirectoryType": "LOGICAL",
               "HomeDirectoryDetails": "[{\"Entry\": \"/\", \"Target\": \"/default/${transfer:UserName}\"}]"}),
        Ok(
            r#"Logical([LogicalEntry { entry: "/", store: "default", prefix: "alice", is_file: false }])"#,
        ),
    );
    check(
        json!({"HomeDirectoryType": "LOGICAL",
               "HomeDirectoryDetails": [
                   {"Entry": "/in", "Target": "/default/in"},
                   {"Entry": "/readme", "Target": "/reports/r.txt", "Type": "FILE"}]}),
        Ok(
            r#"Logical([LogicalEntry { entry: "/in", store: "default", prefix: "in", is_file: false }, LogicalEntry { entry: "/readme", store: "reports", prefix: "r.txt", is_file: true }])"#,
        ),
    );
}

#[test]
fn invalid_responses_say_why() {
    check(json!({}), Err("empty response"));
    check(json!([]), Err("not a JSON object"));
    check(json!({"Role": "readers"}), Err("no HomeDirectory"));
    check(
        json!({"HomeDirectory": "/default/a", "HomeDirectoryDetails": "[]"}),
        Err("exclusive"),
    );
    check(
        json!({"HomeDirectoryType": "LOGICAL"}),
        Err("needs HomeDirectoryDetails"),
    );
    check(
        json!({"HomeDirectoryType": "logical", "HomeDirectory": "/default"}),
        Err("PATH or LOGICAL"),
    );
    check(json!({"HomeDirectory": "default/a"}), Err("absolute"));
    check(json!({"HomeDirectory": "/default/../etc"}), Err("\"..\""));
    check(
        json!({"HomeDirectory": "/nostore/a"}),
        Err("not configured"),
    );
    check(json!({"HomeDirectory": "/"}), Err("must name a store"));
    check(json!({"HomeDirectory": 5}), Err("must be a string"));
    let logical =
        |details: Value| json!({"HomeDirectoryType": "LOGICAL", "HomeDirectoryDetails": details});
    check(logical(json!("not json")), Err("not valid JSON"));
    check(logical(json!([])), Err("empty"));
    check(
        logical(json!([{"Entry": "in", "Target": "/default/x"}])),
        Err("absolute"),
    );
    check(
        logical(json!([{"Entry": "/a/../b", "Target": "/default/x"}])),
        Err("\"..\""),
    );
    check(
        logical(json!([{"Entry": "/a", "Target": "/default/../x"}])),
        Err("\"..\""),
    );
    check(
        logical(
            json!([{"Entry": "/a", "Target": "/default/x"}, {"Entry": "/a/", "Target": "/default/y"}]),
        ),
        Err("more than once"),
    );
    check(
        logical(json!([{"Entry": "/a", "Target": "/elsewhere/x"}])),
        Err("not configured"),
    );
    check(logical(json!([{"Entry": "/a"}])), Err("no Target"));
    check(
        logical(json!([{"Entry": "/a", "Target": "/default/x", "Type": "LINK"}])),
        Err("DIRECTORY or FILE"),
    );
    check(
        logical(json!([{"Entry": "/a", "Target": "/default/x", "Extra": 1}])),
        Err("unknown field"),
    );
    check(
        logical(json!([{"Entry": "/a", "Target": "/default", "Type": "FILE"}])),
        Err("must name an object"),
    );
    check(
        json!({"HomeDirectory": "/default", "Role": "writers"}),
        Err("not in [roles]"),
    );
    check(
        json!({"HomeDirectory": "/default", "Role": "arn:aws:iam::1:role/x"}),
        Err("not the ARN"),
    );
    check(
        json!({"HomeDirectory": "/default", "Policy": "{"}),
        Err("not valid JSON"),
    );
    check(
        json!({"HomeDirectory": "/default", "Policy": {"Version": "2012-10-17"}}),
        Err("does not parse"),
    );
    check(
        json!({"HomeDirectory": "/default", "PublicKeys": ["nonsense"]}),
        Err("PublicKeys[0]"),
    );
    check(
        json!({"HomeDirectory": "/default", "SessionTags": {"team": 1}}),
        Err("must be a string"),
    );
    check(
        json!({"HomeDirectory": "/default", "PosixProfile": {"Uid": -1, "Gid": 0}}),
        Err("Uid"),
    );
}

#[test]
fn unknown_fields_are_named_never_shown() {
    let object = |value: Value| value.as_object().unwrap().clone();
    let none = |name: &str| name.to_owned();
    assert_eq!(
        unknown_fields_warning(
            "lambda",
            &object(json!({"HomeDirectory": "/default", "Role": "r"})),
            none
        ),
        None
    );
    let warning = unknown_fields_warning(
        "lambda",
        &object(json!({
            "HomeDirectory": "/default",
            "Foo": "secret-value",
            "Bar": {"nested": "secret-value"}
        })),
        none,
    )
    .unwrap();
    assert!(warning.contains("\"Foo\""), "{warning}");
    assert!(warning.contains("\"Bar\""), "{warning}");
    assert!(warning.contains("lambda"), "{warning}");
    assert!(!warning.contains("secret-value"), "{warning}");
    assert!(!warning.contains("HomeDirectory"), "{warning}");
    // Hostile names: escaped, shortened, counted, redacted.
    let mut hostile = serde_json::Map::new();
    hostile.insert("line\nbreak".into(), json!(1));
    hostile.insert("x".repeat(500), json!(1));
    hostile.insert("pw-hunter2".into(), json!(1));
    let warning =
        unknown_fields_warning("command", &hostile, |n| n.replace("hunter2", "***")).unwrap();
    assert!(!warning.contains('\n'), "{warning}");
    assert!(warning.contains("line\\nbreak"), "{warning}");
    assert!(
        warning.contains(&format!("\"{}\"...", "x".repeat(64))),
        "{warning}"
    );
    assert!(!warning.contains(&"x".repeat(65)), "{warning}");
    assert!(warning.contains("pw-***"), "{warning}");
    assert!(!warning.contains("hunter2"), "{warning}");
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("f{i:02}"), json!(i))).collect();
    let warning = unknown_fields_warning("command", &many, none).unwrap();
    assert!(warning.contains("\"f19\", and 13 more"), "{warning}");
    assert!(!warning.contains("f20"), "{warning}");
}

#[test]
fn fields_are_carried_into_the_identity() {
    let response = json!({
        "Role": "arn:aws:iam::000000000000:role/readers",
        "Policy": "{\"Version\": \"2012-10-17\", \"Statement\": []}",
        "HomeDirectory": "/default/alice",
        "PublicKeys": [KEY],
        "PosixProfile": {"Uid": 1000, "Gid": 100, "SecondaryGids": [10]},
        "SessionTags": "{\"team\": \"blue\"}",
        "Surprise": true
    });
    let identity = validate_response(&response, "alice", &context()).unwrap();
    assert_eq!(identity.role.as_deref(), Some("readers"));
    assert!(identity.policy.unwrap().get("Statement").is_some());
    assert_eq!(identity.public_keys.len(), 1);
    assert_eq!(identity.posix_profile.unwrap().secondary_gids, [10]);
    assert_eq!(identity.session_tags["team"], "blue");
    assert_eq!(identity.unknown_fields, ["Surprise"]);
}
