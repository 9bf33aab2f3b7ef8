//! Embeds every saved report in `queries/*.sql` into the binary, so adding a report adds no Rust code and an
//! installed appliance needs no extra files.

use std::fmt::Write as _;

fn main() {
    println!("cargo:rerun-if-changed=queries");
    let mut entries: Vec<(String, String)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("queries") {
        for e in dir.flatten() {
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) == Some("sql") {
                println!("cargo:rerun-if-changed={}", path.display());
                let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                let file = path.file_name().and_then(|s| s.to_str()).unwrap_or_default().to_string();
                entries.push((name, file));
            }
        }
    }
    entries.sort();
    let mut out = String::from("/// Saved reports embedded from `queries/`: (name, SQL text).\npub const SAVED_REPORTS: &[(&str, &str)] = &[\n");
    // Paths are resolved against CARGO_MANIFEST_DIR when the crate compiles, not baked in here: a target dir shared
    // by several checkouts (CI clones next to the working copy) must never read another checkout's queries.
    for (name, file) in entries {
        let rel = format!("/queries/{file}");
        let _ = writeln!(out, "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {rel:?}))),");
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into())).join("saved_reports.rs");
    if let Err(e) = std::fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
