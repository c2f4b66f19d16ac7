//! The folder tree is the data flow, and imports point down: no module of `bidder/src`
//! imports one that imports it back, at either level a reader walks —
//!
//! * between the top-level modules (`engine`, `http`, `bid`, `decide`, `money`, …);
//! * between the sibling files of one folder (`control/routes.rs` and
//!   `control/server.rs`), a folder's `mod.rs` aside (it is the folder's face).
//!
//! Imports are read from the source text: `crate::a::…` paths and `super::a` paths,
//! outside comments and `#[cfg(test)]` modules (tests may reach anywhere).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The identifiers right after each `prefix` (`crate::` or `super::`), including each
/// first identifier of a `prefix{a::x, b}` group.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        let before = code[..at].chars().last();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::`, or part of a longer path
        }
        let rest = &code[at + prefix.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                found.extend(group.split(',').map(|item| ident(item.trim())));
            }
            None => found.push(ident(rest)),
        }
    }
    found.retain(|name| !name.is_empty() && name != "super" && name != "self");
    found
}

/// The module a file is, relative to `src`: `bid/gate.rs` is `["bid", "gate"]`,
/// `bid/mod.rs` is `["bid"]`.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix(src_dir()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The import graph between top-level modules, and the one between sibling files of
/// each folder (keyed `folder/file`).
fn graphs() -> (Graph, Graph) {
    let files = rust_files(&src_dir());
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let (mut top, mut siblings) = (Graph::new(), Graph::new());
    for file in &files {
        let module = module_of(file);
        let Some(first) = module.first() else {
            continue;
        }; // lib.rs
        if first == "main" {
            continue;
        }
        let is_mod_rs = file.ends_with("mod.rs");
        let code = code(file);
        top.entry(first.clone()).or_default();
        for target in paths_after(&code, "crate::") {
            if &target != first && modules.contains(&vec![target.clone()]) {
                top.get_mut(first).unwrap().insert(target);
            }
        }
        if is_mod_rs || module.len() < 2 {
            continue;
        }
        let folder = &module[..module.len() - 1];
        let name = |leaf: &str| format!("{}/{leaf}", folder.join("/"));
        siblings.entry(name(&module[module.len() - 1])).or_default();
        for target in paths_after(&code, "super::") {
            let mut sibling = folder.to_vec();
            sibling.push(target.clone());
            if modules.contains(&sibling) && sibling != module {
                let from = name(&module[module.len() - 1]);
                siblings.get_mut(&from).unwrap().insert(name(&target));
            }
        }
    }
    (top, siblings)
}

/// Every pair of modules that reach each other.
fn cycles(graph: &Graph) -> Vec<(String, String)> {
    let reaches = |from: &str, to: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(n) = stack.pop() {
            for next in graph.get(&n).into_iter().flatten() {
                if next == to {
                    return true;
                }
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        false
    };
    let mut found = Vec::new();
    for (from, targets) in graph {
        for to in targets {
            if from < to && reaches(to, from) {
                found.push((from.clone(), to.clone()));
            }
        }
    }
    found
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (top, siblings) = graphs();
    let edges = |g: &Graph| g.values().map(BTreeSet::len).sum::<usize>();
    eprintln!(
        "top-level modules: {} nodes, {} import edges; sibling files: {} nodes, {} edges",
        top.len(),
        edges(&top),
        siblings.len(),
        edges(&siblings)
    );
    assert!(top.len() >= 10, "the walk found the modules: {top:?}");
    assert!(
        top["bid"].contains("decide"),
        "the walk found imports: {top:?}"
    );
    for (graph, level) in [(&top, "top-level modules"), (&siblings, "sibling files")] {
        let found = cycles(graph);
        assert!(
            found.is_empty(),
            "import cycles between {level} (each pair reaches the other): {found:?}\n{graph:#?}"
        );
    }
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: Graph = [
        ("a", &["b"][..]),
        ("b", &["c"]),
        ("c", &["a"]),
        ("d", &["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        cycles(&graph),
        [("a".to_owned(), "b".to_owned()), ("b".into(), "c".into())]
    );
    let code = "use crate::money::{self}; use super::{desk::X, state::Y}; super::super::z";
    assert_eq!(paths_after(code, "crate::"), ["money"]);
    assert_eq!(paths_after(code, "super::"), ["desk", "state"]);
}
