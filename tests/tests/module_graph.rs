//! The code map stays a map: no import cycle between the modules of any
//! crate, at any level (between the top-level modules of a crate, between
//! the submodules of one module, …), and the exporter's layers import
//! only downward (ARCHITECTURE.md):
//! `model` ← `db` ← `freshness` ← `analytics` ← `render` ← `http`, with
//! `telemetry` importing nothing of the crate.
//!
//! Read from the sources: every `crate::…` and `super::…` path (in `use`
//! lines and in code) of a library module, test modules left out (a
//! `#[cfg(test)]` block at the end of a file, or a `tests.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A module by its path from the crate root (`[]` is the root).
type Module = Vec<String>;

/// Every library module of the crate at `src` with its source, test code
/// removed.
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".rs") || name == "main.rs" || name == "tests.rs" {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut module: Module = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            let code = match text.find("\n#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            out.insert(module, code);
        }
    }
    out
}

/// The modules that `code` of `module` refers to, as paths.
fn references(module: &Module, code: &str) -> Vec<Module> {
    let mut out = Vec::new();
    // `super` of `a/b.rs` (module a::b) and of `a/b/mod.rs` (also a::b)
    // is a.
    let parent: Module = module[..module.len().saturating_sub(1)].to_vec();
    let mut paths: Vec<(Module, String)> = Vec::new();
    for line in code.lines() {
        let line = line.trim();
        if line.starts_with("//") {
            continue;
        }
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = line;
            while let Some(at) = rest.find(prefix) {
                let before = rest[..at].chars().last();
                rest = &rest[at + prefix.len()..];
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                if let Some(group) = rest.strip_prefix('{') {
                    // `use crate::{a::b, c};`: each member, one level.
                    let inner = group.split('}').next().unwrap_or("");
                    for member in inner.split(',') {
                        paths.push((base.clone(), member.trim().to_owned()));
                    }
                } else {
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    paths.push((base.clone(), path));
                }
            }
        }
    }
    for (base, path) in paths {
        let mut target = base;
        target.extend(
            path.split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_owned),
        );
        out.push(target);
    }
    out
}

/// Cycles among the children of each module: the edges of the import
/// graph, each lifted to the two children of the lowest common ancestor.
fn cycles(crate_name: &str, src: &Path) -> Vec<String> {
    let mods = modules(src);
    let known: BTreeSet<&Module> = mods.keys().collect();
    // parent → child → children it imports
    let mut graph: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, code) in &mods {
        for target in references(module, code) {
            // The longest known module prefix of the path.
            let Some(len) = (0..=target.len())
                .rev()
                .find(|n| known.contains(&target[..*n].to_vec()))
            else {
                continue;
            };
            let target = &target[..len];
            let common = module
                .iter()
                .zip(target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.len() || common == target.len() {
                continue; // a module and its own ancestor or descendant
            }
            graph
                .entry(module[..common].to_vec())
                .or_default()
                .entry(module[common].clone())
                .or_default()
                .insert(target[common].clone());
        }
    }
    let mut found = Vec::new();
    for (parent, edges) in &graph {
        // Depth-first search for a back edge.
        fn visit(
            node: &str,
            edges: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
            found: &mut Vec<Vec<String>>,
        ) {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut cycle = path[at..].to_vec();
                cycle.push(node.to_owned());
                found.push(cycle);
                return;
            }
            if done.contains(node) {
                return;
            }
            path.push(node.to_owned());
            for next in edges.get(node).into_iter().flatten() {
                visit(next, edges, path, done, found);
            }
            path.pop();
            done.insert(node.to_owned());
        }
        let mut done = BTreeSet::new();
        let mut local = Vec::new();
        for node in edges.keys() {
            visit(node, edges, &mut Vec::new(), &mut done, &mut local);
        }
        for cycle in local {
            found.push(format!(
                "{crate_name}::{}: {}",
                parent.join("::"),
                cycle.join(" → ")
            ));
        }
    }
    found
}

#[test]
fn no_crate_has_an_import_cycle() {
    let mut all = Vec::new();
    for krate in [
        "contract",
        "runtime",
        "ingest",
        "aggregator",
        "exporter",
        "loadgen",
    ] {
        let src = root().join(krate).join("src");
        all.extend(cycles(krate, &src));
    }
    assert!(all.is_empty(), "import cycles:\n{}", all.join("\n"));
}

#[test]
fn a_cycle_is_found() {
    // The check itself: a scratch crate whose modules import each other.
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    fs::create_dir_all(src.join("layer")).unwrap();
    fs::write(
        src.join("lib.rs"),
        "pub mod a;\npub mod b;\npub mod layer;\n",
    )
    .unwrap();
    fs::write(src.join("a.rs"), "use crate::b::Thing;\n").unwrap();
    fs::write(src.join("b.rs"), "pub fn f() { crate::a::g() }\n").unwrap();
    fs::write(src.join("layer/mod.rs"), "pub mod x;\npub mod y;\n").unwrap();
    fs::write(src.join("layer/x.rs"), "use super::y;\n").unwrap();
    fs::write(
        src.join("layer/y.rs"),
        "use super::{x::X, z};\n\n#[cfg(test)]\nmod tests {\n    use crate::a;\n}\n",
    )
    .unwrap();
    let found = cycles("scratch", src);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|c| c.contains("a → b → a")), "{found:?}");
    assert!(found.iter().any(|c| c.contains("x → y → x")), "{found:?}");
}

#[test]
fn the_exporter_layers_import_only_downward() {
    let src = root().join("exporter/src");
    let order = ["model", "db", "freshness", "analytics", "render", "http"];
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let mods = modules(&src);
    let known: BTreeSet<&Module> = mods.keys().collect();
    let mut wrong = Vec::new();
    for (module, code) in &mods {
        let Some(from) = module.first() else { continue };
        for target in references(module, code) {
            let Some(len) = (1..=target.len())
                .rev()
                .find(|n| known.contains(&target[..*n].to_vec()))
            else {
                continue;
            };
            let to = &target[..len][0];
            if to == from {
                continue;
            }
            let downward = match (rank(from), rank(to)) {
                (Some(a), Some(b)) => b < a,
                // telemetry imports nothing of the crate; anyone may
                // import it.
                _ if from == "telemetry" => false,
                (_, None) if to == "telemetry" => true,
                // Beside the layers: config reads model; business metrics
                // read db and model.
                (None, Some(_)) => true,
                (Some(_), None) => to == "config",
                (None, None) => true,
            };
            if !downward {
                wrong.push(format!("{} → {}", module.join("::"), target.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}
