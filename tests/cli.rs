//! The `flotilla` binary: CRD output, rendering, and clear exit-code-2 errors for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn flotilla(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("flotilla runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`flotilla`], measured: exit code, stdout, stderr, wall seconds and the process's own peak
/// resident memory in KiB (from wait4, so no other child of the test process counts).
#[allow(clippy::zombie_processes, reason = "reaped by wait4, which also gives its resource usage")]
fn measured(args: &[&str], dir: &Path) -> (i32, String, String, f64, i64) {
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let started = std::time::Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("flotilla runs");
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for this child, which is reaped only here.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    let seconds = started.elapsed().as_secs_f64();
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out_path), read(&err_path), seconds, usage.ru_maxrss)
}

/// Each file in tests/fixtures/invalid states, in `# expect:` lines, messages it must produce.
#[test]
fn invalid_files_exit_2_naming_the_field() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "fixtures are missing");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expects: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expects.is_empty(), "{} has no `# expect:` line", f.display());
        let (code, stdout, stderr) = flotilla(&["render", "-f", f.to_str().unwrap()]);
        assert_eq!(code, 2, "{}: exit code; stderr:\n{stderr}", f.display());
        assert!(stdout.is_empty(), "{}: nothing may be rendered from invalid input, got:\n{stdout}", f.display());
        for e in &expects {
            let e = e.replace("shop.yaml", f.file_name().unwrap().to_str().unwrap());
            assert!(stderr.contains(&e), "{}: stderr lacks {e:?}; it was:\n{stderr}", f.display());
        }
        assert!(!stderr.contains("panicked"), "{}: panicked:\n{stderr}", f.display());
        for line in stderr.lines() {
            assert!(line.starts_with("error: "), "{}: every line is one error: {line:?}", f.display());
        }
    }
}

#[test]
fn render_prints_children_of_every_microservice() {
    let (code, stdout, stderr) = flotilla(&["render", "-f", "examples/shop"]);
    assert_eq!(code, 0, "{stderr}");
    let docs: Vec<serde_json::Value> =
        serde_yaml_ng::Deserializer::from_str(&stdout).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
    let has = |kind: &str, name: &str| {
        docs.iter().any(|d| d["kind"] == kind && d["metadata"]["name"] == name && d["metadata"]["namespace"] == "shop")
    };
    for svc in ["frontend", "catalog", "orders", "payments", "notifications"] {
        for kind in ["Deployment", "Service", "ServiceAccount", "NetworkPolicy"] {
            assert!(has(kind, svc), "{kind} {svc} missing");
        }
    }
    assert!(has("HorizontalPodAutoscaler", "frontend") && has("HorizontalPodAutoscaler", "orders"));
    assert!(!has("HorizontalPodAutoscaler", "catalog"));
    assert!(has("Ingress", "frontend") && !has("Ingress", "orders"));
    assert!(stderr.contains("skipped (not a Flotilla object)") && stderr.contains("Namespace shop"));
}

#[test]
fn render_namespace_flag_fills_and_checks() {
    let dir = std::env::temp_dir().join(format!("flotilla-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("api.yaml");
    std::fs::write(
        &f,
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api}\nspec: {image: example/api:1}\n",
    )
    .unwrap();
    let (code, stdout, _) = flotilla(&["render", "-f", f.to_str().unwrap(), "-n", "team-a"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("namespace: team-a") && !stdout.contains("namespace: default"));
    let (code, _, stderr) = flotilla(&["render", "-f", "examples/shop/orders.yaml", "-n", "team-a"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("metadata.namespace: \"shop\" does not match the namespace \"team-a\""), "{stderr}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn crd_command_prints_the_committed_crds() {
    let (code, stdout, _) = flotilla(&["crd"]);
    assert_eq!(code, 0);
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/flotilla.dev.yaml")).unwrap();
    assert_eq!(stdout, committed);
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _, stderr) = flotilla(&["render", "-f", "no/such/file.yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no/such/file.yaml") && stderr.contains("No such file"), "{stderr}");
}

#[test]
fn run_stops_with_a_clear_error_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, stderr) = flotilla(&["run", "--leader-elect=false", &format!("--metrics-addr={addr}")]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("cannot serve metrics on {addr}")), "{stderr}");
    assert!(!stderr.contains("\u{1b}["), "no colour codes when stderr is not a terminal: {stderr}");
}

#[test]
fn a_database_without_its_class_among_the_files_is_warned_about() {
    let dir = std::env::temp_dir().join(format!("flotilla-cli-noclass-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("app.yaml");
    std::fs::write(
        &file,
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: api, namespace: team}\n\
         spec: {image: example/api:1, database: {class: postgres}}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = flotilla(&["render", "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("kind: Deployment"), "the service itself is rendered");
    assert!(
        stderr.contains(
            "warning: team/api: spec.database: DatabaseClass \"postgres\" does not exist among the files given"
        ),
        "{stderr}"
    );
}

/// An absurd file is refused quickly with one clear error, before it is parsed: a document larger
/// than the API server takes, and a list far over its limit.
#[test]
fn absurd_input_is_refused_before_it_costs_memory() {
    let dir = std::env::temp_dir().join(format!("flotilla-absurd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let head = "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {name: a}\nspec:\n  image: x\n  dependencies:\n";
    for (file, entries, words) in [
        ("huge.yaml", 1_000_000, "larger than 3145728 bytes"),
        ("long.yaml", 60_000, "spec.dependencies: has 60000 entries; at most 50 are allowed"),
    ] {
        let path = dir.join(file);
        let mut text = String::from(head);
        for i in 0..entries {
            text.push_str(&format!("  - service: s{i}\n"));
        }
        std::fs::write(&path, text).unwrap();
        let (code, out, err, seconds, peak_kib) = measured(&["render", "-f", path.to_str().unwrap()], &dir);
        println!("absurd input: render of {entries} dependencies refused: {seconds:.2}s, peak {} MiB", peak_kib / 1024);
        // The figure in the README is tens of MiB; a parse of the whole document took gigabytes.
        assert!(peak_kib < 200 * 1024, "{file}: peak {peak_kib} KiB");
        assert_eq!(code, 2, "{file}: {err}");
        assert!(out.is_empty(), "{file}: nothing is rendered");
        assert!(err.contains(words), "{file}: {err}");
        assert_eq!(err.lines().count(), 1, "{file}: one error, not one per entry: {}", &err[..err.len().min(500)]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host is held once in `flotilla render` as in the operator: a later claim from another
/// namespace, and a claim on a hand-made Ingress's host, exit 2 naming the host and its holder.
#[test]
fn render_refuses_a_host_another_namespace_holds() {
    let (code, stdout, stderr) = flotilla(&["render", "-f", "tests/fixtures/tenants/two-teams.yaml"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(
            "error: fake-login: spec.expose.ingress.host: \"shop.example.com\" is held by Microservice shop/web"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: old-site: spec.expose.ingress.host: \"legacy.example.com\" is held by Ingress shop/legacy"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("error: web:"), "the holder renders: {stderr}");
}

/// `--policy` is the operator's file: its refusals name the field and the entry, and a file that
/// cannot be used is an error naming its entry.
#[test]
fn render_reads_the_platform_policy() {
    let spec = "tests/fixtures/tenants/policy.yaml";
    let (code, _, stderr) = flotilla(&["render", "--policy", spec, "-f", "tests/fixtures/tenants/two-teams.yaml"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("error: web: spec.expose.ingress.host: \"shop.example.com\" is not a host namespace shop may publish (platform policy ingress.hosts: *.shop.apps.example.com)"), "{stderr}");
    // The shop example is within the shipped defaults, written out in config/manager/policy.yaml.
    let (code, _, stderr) = flotilla(&["render", "--policy", "config/manager/policy.yaml", "-f", "examples/shop"]);
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = flotilla(&["render", "--policy", spec, "-f", "examples/shop"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is above the platform's ceiling of 3 (platform policy ceilings.replicas)"), "{stderr}");
    let bad = std::env::temp_dir().join(format!("flotilla-bad-policy-{}.yaml", std::process::id()));
    std::fs::write(&bad, "ceilings: {memory: lots}\n").unwrap();
    let (code, _, stderr) = flotilla(&["render", "--policy", bad.to_str().unwrap(), "-f", "examples/shop"]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(code, 2);
    assert!(stderr.contains("ceilings.memory: \"lots\" is not a quantity"), "{stderr}");
}

/// The policy shipped in config/manager is the defaults the operator has without one, written
/// out for the platform team to change.
#[test]
fn the_shipped_policy_is_the_default_policy() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/manager/policy.yaml");
    assert_eq!(flotilla::policy::Policy::load(&shipped).unwrap(), flotilla::policy::Policy::default());
}
