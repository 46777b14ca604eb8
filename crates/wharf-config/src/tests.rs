#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::values;
use crate::{Document, Problems, Tagged, field_names, section, tagged_section};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Server {
    #[serde(with = "values::duration")]
    idle: Duration,
    count: u32,
    #[serde(deserialize_with = "values::path::deserialize")]
    dir: PathBuf,
    #[serde(with = "values::cidrs")]
    exempt: Vec<ipnet::IpNet>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Common {
    policy: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Disk {
    root: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cloud {
    endpoint: String,
    #[serde(default, deserialize_with = "values::database::deserialize")]
    database: String,
}

crate::tagged! {
    #[derive(Debug)]
    enum Kind (tag = "kind") {
        "disk" => Disk(Disk),
        "cloud" => Cloud(Cloud),
    }
}

fn document(text: &str, env: &[(&str, &str)]) -> Document {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Document::parse(text, None, PathBuf::from("/etc/wharf"), &env).unwrap()
}

fn problems_of<T: serde::de::DeserializeOwned>(text: &str) -> Vec<String> {
    let mut problems = Problems::default();
    let parsed = section::<T>(document(text, &[]).into_value(), "server", &mut problems);
    assert_eq!(parsed.is_none(), !problems.is_empty());
    problems.into_vec()
}

#[test]
fn every_problem_of_a_section_is_reported_with_its_key_path() {
    assert_eq!(
        problems_of::<Server>(
            "idle = \"soon\"\ncount = -1\nbogus = 1\nexempt = [\"10.0.0.0/8\", \"x\"]\n"
        ),
        [
            "server.bogus: unknown key",
            "server.count: -1 is out of range for a whole number of 0 or more",
            "server.exempt[1]: \"x\" is not an address or a CIDR like 10.0.0.0/8",
            "server.idle: \"soon\" is not a duration like 30s, 15m or 1h",
        ]
    );
    assert_eq!(
        problems_of::<Server>("count = \"many\"\n"),
        ["server.count: expected a whole number of 0 or more, got a string"]
    );
    assert!(problems_of::<Server>("count = 3\n").is_empty());
}

#[test]
fn paths_are_relative_to_the_file_and_env_overrides_apply() {
    let doc = document(
        "dir = \"data\"\ncount = 1\n",
        &[
            ("WHARF__COUNT", "7"),
            ("WHARF__IDLE", "1h30m"),
            ("OTHER", "x"),
        ],
    );
    let mut problems = Problems::default();
    let server: Server = doc
        .read_sections(|| section(doc.clone().into_value(), "", &mut problems))
        .unwrap();
    assert_eq!(server.dir, PathBuf::from("/etc/wharf/data"));
    assert_eq!(server.count, 7);
    assert_eq!(server.idle, Duration::from_secs(5400));
    // Outside `read_sections`, nothing is resolved.
    let server: Server = section(doc.into_value(), "", &mut problems).unwrap();
    assert_eq!(server.dir, PathBuf::from("data"));

    let error = Document::parse(
        "",
        None,
        PathBuf::new(),
        &[("WHARF__A____B".into(), "1".into())],
    )
    .unwrap_err();
    assert_eq!(
        error.into_vec(),
        ["WHARF__A____B: malformed override (WHARF__SECTION__KEY)"]
    );
}

fn tagged(text: &str, default: Option<&str>) -> (Option<(Common, Kind)>, Vec<String>) {
    let mut problems = Problems::default();
    let parsed = tagged_section::<Common, Kind>(
        document(text, &[]).into_value(),
        "storage.r",
        default,
        &mut problems,
    );
    (parsed, problems.into_vec())
}

#[test]
fn a_tagged_section_keeps_key_paths_inside_its_variant() {
    let (parsed, problems) = tagged(
        "kind = \"cloud\"\nendpoint = 5\nroot = \"x\"\npolicy = 1\n",
        None,
    );
    assert!(parsed.is_none());
    assert_eq!(
        problems,
        [
            "storage.r.policy: expected a string, got an integer",
            "storage.r.endpoint: expected a string, got an integer",
            "storage.r.root: unknown key",
        ]
    );
    let (parsed, problems) = tagged("kind = \"disk\"\nroot = \"/x\"\npolicy = \"p\"\n", None);
    assert!(problems.is_empty(), "{problems:?}");
    let (common, kind) = parsed.unwrap();
    assert_eq!(common.policy, "p");
    assert_eq!(kind.name(), "disk");
    assert!(matches!(kind, Kind::Disk(Disk { root }) if root == "/x"));
    let (parsed, problems) = tagged(
        "kind = \"cloud\"\nendpoint = \"http://x\"\ndatabase = \"postgres://db/w\"\n",
        None,
    );
    assert!(problems.is_empty(), "{problems:?}");
    let Some((_, Kind::Cloud(cloud))) = parsed else {
        panic!("not cloud")
    };
    assert_eq!(cloud.endpoint, "http://x");
    assert_eq!(cloud.database, "postgres://db/w");

    assert_eq!(
        tagged("root = \"x\"\n", None).1,
        ["storage.r.kind: required, missing (one of \"disk\", \"cloud\")"]
    );
    assert_eq!(
        tagged("kind = \"tape\"\n", None).1,
        ["storage.r.kind: \"tape\" is not one of \"disk\", \"cloud\""]
    );
    assert_eq!(tagged("kind = 3\n", None).1.len(), 1);
    assert_eq!(
        tagged("", Some("cloud")).1,
        ["storage.r.endpoint: required, missing"]
    );
    assert_eq!(Kind::NAMES, ["disk", "cloud"]);
    assert_eq!(field_names::<Cloud>(), ["endpoint", "database"]);
}
