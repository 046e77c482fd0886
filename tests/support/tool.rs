//! Test tools built from Go modules by their `build.sh` (into the cache outside the work tree).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `script` (relative to the repository root), which builds a tool or finds it in the
/// cache, and returns the binary's path. `purpose` says, in an error, what the tool is for.
pub fn build(script: &str, purpose: &str) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}); this test needs the Go toolchain to build {purpose}:\n{stderr}",
            script.display(),
            out.status
        ));
    }
    eprint!("{stderr}");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if path.is_file() { Ok(path) } else { Err(format!("{} printed no binary: {path:?}", script.display())) }
}
