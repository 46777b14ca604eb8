//! The architecture's dependency rules (ARCHITECTURE.md, "Invariants"),
//! checked over `cargo metadata` so that a change that breaks one fails here
//! rather than in a review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

struct Crate {
    manifest_dir: PathBuf,
    /// Normal (not dev, not build) dependencies, by package name.
    deps: Vec<String>,
}

fn workspace() -> BTreeMap<String, Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let mut crates = BTreeMap::new();
    for package in metadata["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name").to_owned();
        let manifest = PathBuf::from(package["manifest_path"].as_str().expect("manifest"));
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_owned())
            .collect();
        crates.insert(
            name,
            Crate {
                manifest_dir: manifest.parent().expect("crate dir").to_path_buf(),
                deps,
            },
        );
    }
    crates
}

fn sources(dir: &Path, into: &mut String) {
    for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            into.push('\n');
        }
    }
}

#[test]
fn front_ends_never_reach_storage_and_the_policy_crate_stands_alone() {
    let crates = workspace();
    for front_end in ["wharf-sftp", "wharf-ftp"] {
        let deps = &crates[front_end].deps;
        assert!(
            !deps.iter().any(|d| d == "wharf-storage"),
            "{front_end} depends on wharf-storage: front-ends reach bytes only through UserFs"
        );
    }
    let policy = &crates["wharf-policy"].deps;
    let io = [
        "tokio",
        "reqwest",
        "sqlx",
        "hyper",
        "russh",
        "rustls",
        "tokio-rustls",
    ];
    for dep in policy {
        assert!(
            !dep.starts_with("wharf-"),
            "wharf-policy depends on {dep}: it must depend on no wharf crate"
        );
        assert!(
            !io.contains(&dep.as_str()),
            "wharf-policy depends on the I/O crate {dep}: it must do no I/O"
        );
    }
}

#[test]
fn every_declared_dependency_is_used() {
    let mut unused = Vec::new();
    for (name, krate) in workspace() {
        let mut text = String::new();
        sources(&krate.manifest_dir.join("src"), &mut text);
        if krate.manifest_dir.join("build.rs").exists() {
            text.push_str(
                &std::fs::read_to_string(krate.manifest_dir.join("build.rs")).unwrap_or_default(),
            );
        }
        for dep in &krate.deps {
            let ident = dep.replace('-', "_");
            let mentioned = text.contains(&format!("{ident}::"))
                || text.contains(&format!("use {ident}"))
                || text.contains(&format!("{ident}!"))
                || text.contains(&format!("extern crate {ident}"));
            if !mentioned {
                unused.push(format!("{name} -> {dep}"));
            }
        }
    }
    assert!(unused.is_empty(), "declared but never used: {unused:#?}");
}
