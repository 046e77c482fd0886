//! The operator's OCI image as `scripts/image.sh` builds it (no container engine, no registry),
//! judged from the image layout it writes, not from the script's inputs: the index, manifest and
//! config (non-root user, entrypoint, command, port, labels), every blob against its digest, the
//! layers' contents; then the layers are unpacked into a directory and the binary is run from
//! it with the image's own dynamic loader and libraries: in a chroot as the image's user when
//! the test runs as root, else through the image's loader with only the image's libraries.
//!
//! The image is built from the binary `cargo test` built (the debug profile; the release binary
//! is built by `make image`, minutes on this machine), so the test checks the route, the base and
//! the configuration, not the release binary's bytes. It needs what the script needs: apt (with
//! package lists) for the Debian packages, cached in `~/.cache/flotilla/debs`, and Go to build
//! `tests/image/oci-image` once.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BINARY: &str = "/usr/local/bin/flotilla";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A directory of this test's own, removed when the test ends (kept when it fails, to look at).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            std::fs::remove_dir_all(&self.0).ok();
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).expect("UTF-8 output")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file of blob `digest` ("sha256:…") in the layout, after checking its size and that its
/// bytes hash to the digest.
fn blob(layout: &Path, digest: &str, size: &Value) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("{digest} is not a sha256 digest"));
    let path = layout.join("blobs/sha256").join(hex);
    let len = std::fs::metadata(&path).unwrap_or_else(|e| panic!("blob {digest}: {e}")).len();
    assert_eq!(Some(len), size.as_u64(), "blob {digest}: size on disk and in its descriptor");
    assert_eq!(sha256(Command::new("sha256sum").arg(&path)), hex, "blob {digest}: its bytes hash to its name");
    path
}

/// The hex SHA-256 that `cmd` (printing `sha256sum` output) reports.
fn sha256(cmd: &mut Command) -> String {
    stdout(cmd).split_whitespace().next().expect("a sha256sum line").to_string()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// The dynamic loader the operator's binary names (its ELF interpreter) on this architecture.
fn interpreter() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "/lib64/ld-linux-x86-64.so.2",
        "aarch64" => "/lib/ld-linux-aarch64.so.1",
        other => panic!("no known dynamic loader for {other}"),
    }
}

/// `path` inside the root filesystem `rootfs`, its symlinks followed inside it (an absolute
/// link target is the image's, not this machine's).
fn in_root(rootfs: &Path, path: &str) -> PathBuf {
    let mut path = PathBuf::from(path);
    for _ in 0..10 {
        let here = rootfs.join(path.strip_prefix("/").unwrap_or(&path));
        match std::fs::read_link(&here) {
            Ok(target) if target.is_absolute() => path = target,
            Ok(target) => path = path.parent().unwrap_or(Path::new("/")).join(target),
            Err(_) => return here,
        }
    }
    panic!("{} links on and on", path.display())
}

#[test]
fn the_image_built_here_is_what_its_config_says_and_runs_from_its_own_root_filesystem() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = Scratch(std::env::temp_dir().join(format!("flotilla-image-test-{}", std::process::id())));
    std::fs::remove_dir_all(&scratch.0).ok();
    std::fs::create_dir_all(&scratch.0).unwrap();
    let out = scratch.0.join("out");

    // Build: gzip's fastest level, as the debug binary is ten times the release one.
    let built = std::time::Instant::now();
    let digest = stdout(
        Command::new("bash")
            .arg(root.join("scripts/image.sh"))
            .args(["--binary", env!("CARGO_BIN_EXE_flotilla"), "--out"])
            .arg(&out)
            .env("IMAGE_GZIP_LEVEL", "1")
            .stderr(Stdio::inherit()),
    );
    eprintln!("image built in {:.1}s", built.elapsed().as_secs_f64());
    let layout = out.join("image");

    // The layout: one image, tagged with the version, for this machine's platform.
    assert_eq!(read_json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["mediaType"], "application/vnd.oci.image.index.v1+json");
    let [desc] = index["manifests"].as_array().expect("index.json lists manifests").as_slice() else {
        panic!("index.json should list exactly one image: {index:#}");
    };
    assert_eq!(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], VERSION);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        (desc["platform"]["os"].as_str(), desc["platform"]["architecture"].as_str()),
        (Some("linux"), Some(arch))
    );
    assert_eq!(desc["digest"].as_str(), Some(digest.trim()), "the digest the script printed is the index's");
    let manifest = read_json(&blob(&layout, desc["digest"].as_str().unwrap(), &desc["size"]));
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
    let config = read_json(&blob(&layout, manifest["config"]["digest"].as_str().unwrap(), &manifest["config"]["size"]));

    // The config: a non-root user, the operator as entrypoint with `run`, its port, the labels.
    let c = &config["config"];
    let user = c["User"].as_str().expect("the config names a User");
    let (uid, gid) = user.split_once(':').expect("User is uid:gid");
    let (uid, gid): (u32, u32) = (uid.parse().expect("a numeric uid"), gid.parse().expect("a numeric gid"));
    assert_ne!(uid, 0, "the image's user is not root");
    assert_ne!(gid, 0, "the image's group is not root");
    assert_eq!(strings(&c["Entrypoint"]), [BINARY]);
    assert_eq!(strings(&c["Cmd"]), ["run"]);
    let ports: Vec<&String> = c["ExposedPorts"].as_object().expect("ExposedPorts").keys().collect();
    assert_eq!(ports, ["8080/tcp"]);
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some(arch)));
    let labels = c["Labels"].as_object().expect("Labels");
    let label = |k: &str| labels.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("label {k}: {labels:?}"));
    assert_eq!(label("org.opencontainers.image.version"), VERSION);
    assert!(label("org.opencontainers.image.source").starts_with("https://"));
    let revision = label("org.opencontainers.image.revision");
    assert!(revision.len() >= 40 && revision[..40].bytes().all(|b| b.is_ascii_hexdigit()), "revision {revision}");
    assert_eq!(config["created"], label("org.opencontainers.image.created"));
    let packages: BTreeMap<&str, &str> = label("dev.flotilla.image.debian-packages")
        .split_whitespace()
        .map(|p| p.split_once('=').unwrap_or_else(|| panic!("{p} is not package=version")))
        .collect();
    for needed in ["libc6", "libgcc-s1", "ca-certificates", "base-files"] {
        assert!(packages.contains_key(needed), "{needed} is among the image's packages: {packages:?}");
    }

    // The layers: each blob hashes to its digest and, uncompressed, to its diff_id; no whiteouts
    // (the layers are unpacked in order below, which whiteouts would defeat).
    let layers = manifest["layers"].as_array().expect("layers");
    let diff_ids = strings(&config["rootfs"]["diff_ids"]);
    assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");
    let rootfs = scratch.0.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let (mut binary_layer, mut home) = (None, false);
    for (i, (layer, diff_id)) in layers.iter().zip(&diff_ids).enumerate() {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let file = blob(&layout, layer["digest"].as_str().unwrap(), &layer["size"]);
        let uncompressed = sha256(Command::new("sh").arg("-c").arg("gzip -dc \"$1\" | sha256sum").arg("sh").arg(&file));
        assert_eq!(format!("sha256:{uncompressed}"), *diff_id, "layer {i}: diff_id");
        let listing = stdout(Command::new("tar").args(["--numeric-owner", "-tvzf"]).arg(&file).env("LC_ALL", "C"));
        for line in listing.lines() {
            assert!(!line.contains(".wh."), "layer {i} has a whiteout: {line}");
            if line.ends_with(" usr/local/bin/flotilla") {
                assert!(line.starts_with("-rwxr-xr-x 0/0 "), "layer {i}: the binary is root's, all may run it: {line}");
                binary_layer = Some(i);
            }
            if line.ends_with(" home/nonroot/") {
                assert!(
                    line.starts_with(&format!("drwx------ {uid}/{gid} ")),
                    "layer {i}: the user owns its home: {line}"
                );
                home = true;
            }
        }
        run(Command::new("tar").arg("-xzf").arg(&file).arg("-C").arg(&rootfs));
    }
    assert_eq!(binary_layer, Some(layers.len() - 1), "the binary is in the last layer");
    assert!(home, "a layer holds /home/nonroot");

    // The unpacked root filesystem: the binary, the user the config names, the packages recorded
    // where scanners read them (distroless's /var/lib/dpkg/status.d), the CA bundle.
    let bin = std::fs::metadata(rootfs.join(&BINARY[1..])).expect("the binary in the unpacked image");
    assert!(bin.is_file() && bin.permissions().mode() & 0o111 == 0o111, "{BINARY} is executable by all");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("/etc/passwd");
    let entry = passwd.lines().find(|l| l.split(':').nth(2) == Some(&uid.to_string()));
    assert!(
        entry.is_some_and(|e| e.starts_with("nonroot:") && e.split(':').nth(3) == Some(&gid.to_string())),
        "/etc/passwd names the config's user {user}: {passwd}"
    );
    for (package, version) in &packages {
        let status = std::fs::read_to_string(rootfs.join("var/lib/dpkg/status.d").join(package))
            .unwrap_or_else(|e| panic!("status.d/{package}: {e}"));
        assert!(status.lines().any(|l| l == format!("Version: {version}")), "status.d/{package} says {version}");
    }
    let bundle = std::fs::read_to_string(rootfs.join("etc/ssl/certs/ca-certificates.crt")).expect("the CA bundle");
    assert!(bundle.matches("BEGIN CERTIFICATE").count() >= 50, "the CA bundle holds Debian's roots");

    // Run it as the image would: its own loader and libraries, its user, its environment only.
    // As root, in a chroot of the unpacked layers as the config's user. Otherwise through the
    // image's loader with the image's library directories; the loader would still fall back to
    // this machine's /lib for a library the image lacks, so its resolution is checked first.
    let env: Vec<(&str, &str)> = strings(&c["Env"]).iter().filter_map(|kv| kv.split_once('=')).collect();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    let libs =
        std::env::join_paths([format!("lib/{triplet}"), format!("usr/lib/{triplet}")].map(|d| rootfs.join(d))).unwrap();
    let loader = || {
        let mut cmd = Command::new(in_root(&rootfs, interpreter()));
        cmd.arg("--library-path").arg(&libs);
        cmd
    };
    if !as_root {
        eprintln!("not root: running {BINARY} through the image's loader as this user, not in a chroot");
        let resolved = stdout(loader().arg("--list").arg(rootfs.join(&BINARY[1..])));
        for lib in resolved.lines().filter_map(|l| l.split_once(" => ")).map(|(_, p)| p.trim()) {
            assert!(lib.starts_with(rootfs.to_str().unwrap()), "a library from outside the image: {lib}\n{resolved}");
        }
    }
    let in_image = |args: &[&str]| -> Output {
        let mut cmd = if as_root {
            let mut cmd = Command::new("chroot");
            cmd.arg(format!("--userspec={uid}:{gid}")).arg(&rootfs).arg(BINARY);
            cmd
        } else {
            let mut cmd = loader();
            cmd.arg(rootfs.join(&BINARY[1..]));
            cmd
        };
        run(cmd.args(args).env_clear().envs(env.iter().copied()))
    };
    let version = String::from_utf8(in_image(&["--version"]).stdout).unwrap();
    assert_eq!(version.trim(), format!("flotilla {VERSION}"));
    let crd = String::from_utf8(in_image(&["crd"]).stdout).unwrap();
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&crd)
        .map(|d| serde::Deserialize::deserialize(d).expect("`flotilla crd` in the image prints YAML"))
        .collect();
    assert!(!docs.is_empty(), "`flotilla crd` printed CRDs");
    for d in &docs {
        assert_eq!(d["kind"], "CustomResourceDefinition", "{d}");
    }
    assert!(docs.iter().any(|d| d["metadata"]["name"] == "microservices.flotilla.dev"));
    let host = stdout(Command::new(env!("CARGO_BIN_EXE_flotilla")).arg("crd"));
    assert_eq!(crd, host, "the image's binary prints what the binary it was built from prints");
}
