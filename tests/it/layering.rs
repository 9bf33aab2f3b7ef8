//! Layering that stays true. The library's modules form floors: the shared vocabulary and the seams at the
//! bottom (`model`, `fault`, `clock`, `progress`) import nothing else of the crate; the stages import each other
//! without cycles, so data flows one way; and no stage below the server imports `serve` (the server reads the
//! stages, never the other way round). This test reads the `crate::…` paths of every library source file (code
//! lines, not comments, not unit-test modules) and fails naming the offending import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floor: shared vocabulary and seams, importing no other module of the crate.
const FLOOR: &[&str] = &["model", "fault", "clock", "progress"];
/// The modules below the server: none of them may import `serve`.
const BELOW_SERVE: &[&str] =
    &["source", "extract", "staging", "merge", "transform", "mart", "query", "maintenance", "replicate", "sim"];

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules other than `module` that `text` names as `crate::<module>`, up to its unit tests.
fn imports_of(text: &str, module: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("mod tests") {
            break;
        }
        // Comments (whole lines and the end of a line) name modules without importing them.
        let code = code.find("//").map_or(code, |at| &code[..at]);
        for (i, _) in code.match_indices("crate::") {
            // `ccmart::` is the binary's and the tests' name for the crate, not a path inside it.
            if code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                out.insert(name);
            }
        }
    }
    out
}

/// Module → the modules it imports, for every top-level module of the library (`main.rs` and the bin-only
/// `cli/` are the binary's, above everything).
fn library_graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if matches!(name.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path.clone());
        }
        let imports = graph.entry(name.clone()).or_default();
        for f in files {
            imports.extend(imports_of(&std::fs::read_to_string(&f).unwrap(), &name));
        }
    }
    graph
}

/// A cycle of `graph` (its modules in order, the first repeated at the end), if there is one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

/// Every rule broken by `graph`, one line each.
fn violations(graph: &Graph) -> Vec<String> {
    let mut out = Vec::new();
    for floor in FLOOR {
        for m in graph.get(*floor).into_iter().flatten() {
            out.push(format!("{floor} is on the floor but imports crate::{m}"));
        }
    }
    for below in BELOW_SERVE {
        if graph.get(*below).is_some_and(|i| i.contains("serve")) {
            out.push(format!("{below} is below the server but imports crate::serve"));
        }
    }
    if let Some(c) = cycle(graph) {
        out.push(format!("import cycle: {}", c.join(" -> ")));
    }
    out
}

#[test]
fn the_library_is_layered_floor_stages_server_without_cycles() {
    let graph = library_graph();
    for m in FLOOR.iter().chain(BELOW_SERVE).chain(&["serve", "config", "pipeline"]) {
        assert!(graph.contains_key(*m), "module {m} not found under src/: update the layering test");
    }
    let broken = violations(&graph);
    assert!(broken.is_empty(), "layering broken:\n{}\n(graph: {graph:#?})", broken.join("\n"));
}

/// The checker itself: it sees a cycle, a floor that imports, a stage that imports the server, and skips comments,
/// `ccmart::` paths and unit tests.
#[test]
fn the_layering_check_finds_what_it_guards_against() {
    let text = "use crate::staging::Store;\n/// [`crate::serve::X`]\nlet x = ccmart::serve::y;\n\
                crate::mart::open(); // crate::query\nmod tests {\nuse crate::serve;\n}";
    assert_eq!(imports_of(text, "merge"), BTreeSet::from(["staging".to_string(), "mart".to_string()]));
    let graph: Graph = [
        ("model", vec!["staging"]),
        ("staging", vec!["model", "merge"]),
        ("merge", vec!["staging", "serve"]),
        ("serve", vec!["merge"]),
    ]
    .into_iter()
    .map(|(m, i)| (m.to_string(), i.into_iter().map(String::from).collect()))
    .collect();
    let broken = violations(&graph);
    assert!(broken.iter().any(|v| v.starts_with("model is on the floor")), "{broken:?}");
    assert!(broken.iter().any(|v| v.starts_with("merge is below the server")), "{broken:?}");
    assert!(broken.iter().any(|v| v.starts_with("import cycle: ")), "{broken:?}");
    assert_eq!(violations(&Graph::from([("model".to_string(), BTreeSet::new())])), Vec::<String>::new());
}
