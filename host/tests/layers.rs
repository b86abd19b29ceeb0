//! The walls of the crate, checked: every module of `host/src` belongs to a layer, and a file may
//! import only from layers below its own (or from its own module), and no two files import each
//! other. The layers, lowest first:
//!
//! 0. `wire`: what crosses a socket (and the one clock); `wait`: waiting for signals and times.
//! 1. `task`: the task model and its state machine.
//! 2. `store` (LMDB) and `policy` (the WebAssembly host): side by side, neither knows the other.
//! 3. `engine`: the thread that owns the live state, and its writer; `lab`: the policy lab,
//!    which runs the policy host in simulated time (beside the engine, never through it).
//! 4. `server` (HTTP and WebSocket), `sidecar` (`switchyard agent`), `bench` (the load
//!    generator), `author` (`policy new` and `policy build`): the edges, side by side.
//! 5. `cli`, then `lib`/`main`: the command line that wires everything together.
//!
//! Imports are read from the source text (`use crate::…`, `use super::…` and inline
//! `crate::…` paths), which is what a reader follows too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u8)] = &[
    ("wire", 0),
    ("wait", 0),
    ("duration", 0),
    ("test_support", 0),
    ("task", 1),
    ("store", 2),
    ("policy", 2),
    ("engine", 3),
    ("lab", 3),
    ("server", 4),
    ("sidecar", 4),
    ("bench", 4),
    ("author", 4),
    ("cli", 5),
    ("lib", 6),
    ("main", 6),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module `{module}` has no layer: add it to LAYERS"))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The module path of a file: `engine/state.rs` -> ["engine", "state"], `engine/mod.rs` ->
/// ["engine"], `lib.rs` -> [].
fn module_of(file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file a module path names, taking the longest prefix that is a file of the crate.
fn file_of(path: &[String], files: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| files.contains(prefix))
}

/// Code without comments (line comments and doc comments), so prose naming a path is not an
/// import.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let mut tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    for token in ["{", "}", ",", "::"] {
        tree = tree
            .replace(&format!(" {token}"), token)
            .replace(&format!("{token} "), token);
    }
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.len() - 1];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .flat_map(|item| expand(item).into_iter().map(|e| format!("{prefix}{e}")))
        .collect()
}

/// The crate paths a file refers to, as module paths (`crate::` and `super::` resolved).
fn imports(file: &Path) -> Vec<Vec<String>> {
    let text = code(&std::fs::read_to_string(file).unwrap());
    let here = module_of(file);
    let is_mod_file = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs" || n == "main.rs");
    let mut paths = Vec::new();
    // `use` statements, braces expanded.
    for statement in text.split(';') {
        let statement = statement.trim();
        let Some(tree) = statement
            .strip_prefix("pub use ")
            .or_else(|| statement.strip_prefix("pub(crate) use "))
            .or_else(|| statement.strip_prefix("use "))
            .or_else(|| statement.rsplit_once("\nuse ").map(|(_, t)| t))
            .or_else(|| statement.rsplit_once("\npub use ").map(|(_, t)| t))
        else {
            continue;
        };
        paths.extend(expand(tree));
    }
    // Inline paths such as `crate::wire::now_ms()`.
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        paths.push(rest[..end].to_owned());
    }
    paths
        .into_iter()
        .filter_map(|path| {
            let segments: Vec<String> = path
                .split("::")
                .map(|s| s.split(" as ").next().unwrap().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            let (first, rest) = segments.split_first()?;
            let mut base = match first.as_str() {
                "crate" => Vec::new(),
                "super" => {
                    // `super` of `engine/state.rs` is `engine`; of `engine/mod.rs`, the crate.
                    let mut parent = here.clone();
                    if !is_mod_file || !parent.is_empty() {
                        parent.pop();
                    }
                    parent
                }
                _ => return None,
            };
            base.extend(rest.iter().filter(|s| *s != "self" && *s != "*").cloned());
            Some(base)
        })
        .collect()
}

struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
    /// Which files each file imports.
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn read_crate() -> Crate {
    let mut found = Vec::new();
    sources(&src(), &mut found);
    let files: BTreeMap<Vec<String>, PathBuf> =
        found.into_iter().map(|f| (module_of(&f), f)).collect();
    let names: BTreeSet<Vec<String>> = files.keys().cloned().collect();
    let mut edges = BTreeMap::new();
    for (module, file) in &files {
        let targets: BTreeSet<Vec<String>> = imports(file)
            .iter()
            .filter_map(|path| file_of(path, &names))
            .filter(|target| target != module && !target.is_empty())
            // A module's own children (declared by it) are part of it, e.g. `mod.rs` using
            // what `state.rs` defines.
            .filter(|target| !target.starts_with(module) || module.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    Crate { files, edges }
}

fn top(module: &[String]) -> &str {
    module.first().map(String::as_str).unwrap_or("lib")
}

#[test]
fn no_file_imports_from_a_higher_layer_or_a_side_by_side_module() {
    let krate = read_crate();
    let mut wrong = Vec::new();
    for (module, targets) in &krate.edges {
        for target in targets {
            let (from, to) = (top(module), top(target));
            if from != to && layer(to) >= layer(from) {
                wrong.push(format!(
                    "{} (layer {}) imports {} (layer {})",
                    module.join("::"),
                    layer(from),
                    target.join("::"),
                    layer(to)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other() {
    let krate = read_crate();
    let mut cycles = Vec::new();
    for (module, targets) in &krate.edges {
        for target in targets {
            let back = krate.edges.get(target).is_some_and(|t| t.contains(module));
            if back && module < target {
                cycles.push(format!("{} <-> {}", module.join("::"), target.join("::")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_reader_sees_the_imports() {
    // The checks above are only as good as the import reader: it must see these.
    let krate = read_crate();
    let state = vec!["engine".to_owned(), "state".to_owned()];
    let edges = &krate.edges[&state];
    for expected in [
        vec!["engine", "feed"],
        vec!["store"],
        vec!["task"],
        vec!["wire", "agent"],
    ] {
        let expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        assert!(
            edges.contains(&expected),
            "engine::state imports {expected:?}: {edges:?}"
        );
    }
    assert!(krate.files.len() > 40, "every source file is read");
    assert_eq!(
        expand("a::{b, c::{d, e as f}}"),
        vec!["a::b", "a::c::d", "a::c::e as f"]
    );
}
