//! The rules of reach (ARCHITECTURE.md): every module of `src/` sits on a layer and may name
//! only modules on lower layers. Read from the source itself, so an import that runs uphill (and
//! with it any cycle between modules) fails here, naming the file and the import.

use std::collections::BTreeSet;
use std::path::Path;

/// Layers from the ground up. A module may import modules of lower layers only (and itself).
const LAYERS: &[&[&str]] = &[
    &["vocab", "procfs", "log_escape", "log_limit"],
    &["signal::protocol"],
    &["config", "auth", "store", "badge", "turn"],
    &["edge", "sfu", "cluster", "webhook"],
    &["room::handle"],
    &["room::shared"],
    &["room::actor"],
    &["room::registry", "room"],
    &["metrics"],
    &["state"],
    &["signal::connection", "signal"],
    &["server"],
    &["client"],
    &["load"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The module a source file belongs to, at the grain of the layers above.
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let parts: Vec<&str> = rel.split('/').filter(|p| *p != "mod").collect();
    match parts.as_slice() {
        ["signal", sub, ..] => format!("signal::{sub}"),
        ["room", sub @ ("handle" | "shared" | "registry"), ..] => format!("room::{sub}"),
        ["room", _, ..] => "room::actor".to_string(),
        [top, ..] => top.to_string(),
        [] => String::new(),
    }
}

/// A path's target at the layers' grain: `crate::room::RoomId` → `room`,
/// `crate::signal::protocol::X` → `signal::protocol`.
fn target_of(first: &str, second: Option<&str>) -> String {
    match (first, second) {
        ("signal", Some(s @ ("protocol" | "connection"))) => format!("signal::{s}"),
        ("room", Some(s @ ("handle" | "shared" | "registry" | "actor"))) => format!("room::{s}"),
        (f, _) => f.to_string(),
    }
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// Every `crate::…` path in `text` (and `super::…` paths that leave a room submodule), with
/// unit-test modules left out: tests may reach for fixtures anywhere below.
fn imports(text: &str, module: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let first = ident(rest);
        let second = rest[first.len()..].strip_prefix("::").map(ident);
        out.insert(target_of(first, second));
    }
    if module.starts_with("room::") {
        for (i, _) in code.match_indices("super::") {
            let name = ident(&code[i + "super::".len()..]);
            if matches!(name, "handle" | "shared" | "registry" | "actor") {
                out.insert(format!("room::{name}"));
            }
        }
    }
    out.remove(module);
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    let mut uphill = Vec::new();
    let mut checked = 0;
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        // The crate root and the binaries sit above everything.
        if rel == "lib.rs" || rel == "main.rs" || rel.starts_with("bin/") {
            continue;
        }
        let module = module_of(&rel);
        let own = layer_of(&module).unwrap_or_else(|| panic!("{rel}: module `{module}` has no layer in LAYERS; give it one"));
        let text = std::fs::read_to_string(file).expect("readable source");
        for target in imports(&text, &module) {
            // Paths into the module's own family (`room` from `room::actor`) are its own.
            if module.split("::").next() == Some(target.as_str()) || target.starts_with(&format!("{module}::")) {
                continue;
            }
            let Some(theirs) = layer_of(&target) else { continue };
            if theirs >= own {
                uphill.push(format!("{rel} ({module}, layer {own}) imports {target} (layer {theirs})"));
            }
        }
        checked += 1;
    }
    assert!(checked > 30, "read only {checked} files: is the source tree where this test looks?");
    assert!(uphill.is_empty(), "imports that run uphill:\n{}", uphill.join("\n"));
}

#[test]
fn the_checker_sees_an_uphill_import() {
    let found = imports("use crate::server::AppState;\nfn f() { crate::room::RoomId::new(\"a\"); }", "sfu");
    assert!(found.contains("server") && found.contains("room"), "{found:?}");
    assert!(layer_of("server") > layer_of("sfu"));
}
