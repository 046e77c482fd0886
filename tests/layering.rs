//! The modules form layers with no cycle: api → validate → render (pure: the same input gives the
//! same output, no I/O) → controller (all I/O). A file may name a module of its own layer or a
//! lower one only; this test reads every `crate::` path in `src/` and fails on one that points up.

use std::path::{Path, PathBuf};

/// Layers from the bottom; a module may use its own layer and those before it.
const LAYERS: [(&str, &[&str]); 7] = [
    ("utility", &["hash", "telemetry"]),
    ("api", &["api"]),
    ("validate", &["validate"]),
    ("policy", &["policy"]),
    ("render", &["render", "manifest"]),
    ("metrics", &["metrics", "server"]),
    ("controller", &["controller"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, modules)| modules.contains(&module))
}

/// The top-level module a file under `src/` belongs to (`None` for the crate root and `main`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let module = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(module, "lib" | "main")).then(|| module.to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every module named after `crate::` in `text`, with its line, comments included: a doc link
/// to a higher layer is a dependency a reader follows too.
fn uses(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name.is_empty() {
                // `crate::{a, b}`: each name inside the braces.
                if let Some(group) = rest.strip_prefix('{').and_then(|g| g.split('}').next()) {
                    for part in group.split(',') {
                        let part = part.trim().split("::").next().unwrap_or_default().to_string();
                        if !part.is_empty() {
                            out.push((n + 1, part));
                        }
                    }
                }
            } else {
                out.push((n + 1, name));
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_higher_layer() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let own = layer_of(&module).unwrap_or_else(|| panic!("src module {module:?} is in no layer of this test"));
        let text = std::fs::read_to_string(file).expect("source is readable");
        for (line, used) in uses(&text) {
            let Some(theirs) = layer_of(&used) else { continue };
            checked += 1;
            if theirs > own {
                wrong.push(format!(
                    "{}:{line}: {module} ({}) uses {used} ({})",
                    file.strip_prefix(&src).unwrap().display(),
                    LAYERS[own].0,
                    LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(checked > 50, "only {checked} crate paths found: is the parser still reading them?");
    assert!(wrong.is_empty(), "uses of a higher layer:\n{}", wrong.join("\n"));
}

#[test]
fn the_parser_sees_each_form_of_path() {
    let text = "use crate::render::Input;\nlet x = crate::controller::f(); // and crate::api\nuse crate::{validate, hash::fnv1a};";
    let names: Vec<String> = uses(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["render", "controller", "api", "validate", "hash"]);
}
