//! The toolchain the workspace declares is the one its locked dependencies
//! need: `rust-version` of `[workspace.package]` equals the highest
//! `rust-version` among the locked packages (`cargo metadata --locked`,
//! offline), and every member inherits it. Only the installed toolchains
//! can run here, so this is how a too-low declaration is caught.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `1.89` and `1.89.0` alike, as (major, minor, patch).
fn version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust-version {v:?}"))
    });
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

#[test]
fn rust_version_is_what_the_locked_dependencies_need() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let declared = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("[workspace.package] rust-version");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--locked", "--offline", "--format-version", "1"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: Value = serde_json::from_slice(&out.stdout).unwrap();
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut needed: Option<((u64, u64, u64), String)> = None;
    for p in metadata["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let rust_version = p["rust_version"].as_str();
        if members.contains(&p["id"].as_str().unwrap()) {
            assert_eq!(
                rust_version,
                Some(declared),
                "{name} must inherit rust-version (rust-version.workspace = true)"
            );
            continue;
        }
        if let Some(v) = rust_version {
            if needed.as_ref().is_none_or(|(max, _)| version(v) > *max) {
                needed = Some((version(v), format!("{name} {}", p["version"])));
            }
        }
    }
    let (needed, by) = needed.expect("some locked package declares a rust-version");
    assert_eq!(
        version(declared),
        needed,
        "[workspace.package] rust-version is {declared}, the locked packages need {needed:?} ({by})"
    );
}
