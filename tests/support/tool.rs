//! Test tools built from Go modules by their `build.sh` (into the cache outside the work tree).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `script` (relative to the repository root), which builds a tool or finds it in the
/// cache, and returns the binary's path. `purpose` says, in an error, what the tool is for.
pub fn build(script: &str, purpose: &str) -> Result<PathBuf, String> {
    match printed_files(script, purpose)?.as_slice() {
        [path] => Ok(path.clone()),
        paths => Err(format!("{script} printed {} paths, not one binary: {paths:?}", paths.len())),
    }
}

/// Runs `script` (relative to the repository root), which builds or downloads what `purpose`
/// names into a cache (a tool, a project's pinned CRDs), and returns the files whose paths it
/// printed, one a line, each checked to exist.
pub fn printed_files(script: &str, purpose: &str) -> Result<Vec<PathBuf>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); this test needs the Go toolchain and the Go module proxy (or Go's module cache) \
             for {purpose}:\n{stderr}",
            script.display(),
            out.status
        ));
    }
    eprint!("{stderr}");
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout).lines().map(PathBuf::from).collect();
    match paths.iter().find(|p| !p.is_file()) {
        _ if paths.is_empty() => Err(format!("{} printed no path", script.display())),
        Some(missing) => Err(format!("{} printed {missing:?}, which is no file", script.display())),
        None => Ok(paths),
    }
}
