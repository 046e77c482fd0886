//! The Argo CD health check for `flotilla.dev/Microservice` (config/argocd), run the way Argo CD
//! runs it: the object as the global `obj`, no Lua standard libraries beyond the base functions
//! and `table`, a 1 s budget, and the result compared with Argo CD's own test file
//! (`resource_customizations/flotilla.dev/Microservice/health_test.yaml`), then again in Argo CD's
//! own engine (gopher-lua, Lua 5.1), built from its Go module.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, StdLib, Value, VmState};
use serde::Deserialize;

/// Argo CD cancels a health script after one second.
const BUDGET: Duration = Duration::from_secs(1);

/// The health statuses Argo CD accepts from a script; anything else becomes Unknown.
const VALID_STATUSES: [&str; 6] = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];

fn argocd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/argocd")
}

fn customization_dir() -> PathBuf {
    argocd_dir().join("resource_customizations/flotilla.dev/Microservice")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn script() -> String {
    read(&argocd_dir().join("health.lua"))
}

/// Argo CD's `health_test.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthTests {
    tests: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Case {
    health_status: HealthStatus,
    input_path: String,
}

/// What Argo CD reads from the returned table (`health.HealthStatus`): a missing message is "".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthStatus {
    status: String,
    #[serde(default)]
    message: String,
    /// What Argo CD shows for an object being deleted, instead of its own "Pending deletion".
    #[serde(default, rename = "deletionMessage")]
    deletion_message: String,
}

fn cases() -> Vec<Case> {
    let path = customization_dir().join("health_test.yaml");
    let tests: HealthTests =
        serde_yaml_ng::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!tests.tests.is_empty(), "{} lists no tests", path.display());
    tests.tests
}

fn load_yaml(path: &Path) -> serde_json::Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Lua state with what Argo CD gives a health script when `useOpenLibs` is off: the base
/// functions (`ipairs`, `pairs`, `tonumber`, `type`, ...) and `table`. No `string`, `os`, `io`,
/// `math`, `require`; no file access either.
fn sandbox() -> mlua::Result<Lua> {
    let lua = Lua::new_with(StdLib::TABLE, LuaOptions::new())?;
    let globals = lua.globals();
    for name in ["require", "dofile", "loadfile"] {
        globals.raw_set(name, Value::Nil)?;
    }
    Ok(lua)
}

/// JSON to Lua the way Argo CD's `decodeValue` does it: objects and arrays become tables (arrays
/// 1-based), null becomes nil. Whole numbers become Lua integers so that `"..." .. n` prints `2`
/// as gopher-lua does, not `2.0`.
fn to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<Value> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::String(lua.create_string(s)?),
        J::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
        J::Object(map) => {
            let table = lua.create_table_with_capacity(0, map.len())?;
            for (key, item) in map {
                table.raw_set(key.as_str(), to_lua(lua, item)?)?;
            }
            Value::Table(table)
        }
    })
}

/// Runs `script` against `obj` in the sandbox, within the budget, and reads the result as Argo CD
/// does: it must return a table whose `status` is one Argo CD knows.
fn run(script: &str, obj: &serde_json::Value) -> Result<HealthStatus, String> {
    let lua = sandbox().map_err(|e| e.to_string())?;
    lua.globals().set("obj", to_lua(&lua, obj).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let start = Instant::now();
    lua.set_hook(HookTriggers::new().every_nth_instruction(1_000), move |_, _| {
        if start.elapsed() > BUDGET {
            Err(mlua::Error::runtime("the health script ran out of Argo CD's 1 s budget"))
        } else {
            Ok(VmState::Continue)
        }
    })
    .map_err(|e| e.to_string())?;
    let returned: Value = lua.load(script).set_name("health.lua").eval().map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();
    if elapsed > BUDGET {
        return Err(format!("took {elapsed:?}, more than Argo CD's budget of {BUDGET:?}"));
    }
    let Value::Table(hs) = returned else {
        return Err(format!("expected a table from the script, got {}", returned.type_name()));
    };
    let status: Option<String> = hs.get("status").map_err(|e| format!("hs.status: {e}"))?;
    let message: Option<String> = hs.get("message").map_err(|e| format!("hs.message: {e}"))?;
    let deletion_message: Option<String> = hs.get("deletionMessage").map_err(|e| format!("hs.deletionMessage: {e}"))?;
    let status = status.ok_or("hs.status is not set")?;
    if !VALID_STATUSES.contains(&status.as_str()) {
        return Err(format!("hs.status {status:?} is not a health status Argo CD knows"));
    }
    Ok(HealthStatus {
        status,
        message: message.unwrap_or_default(),
        deletion_message: deletion_message.unwrap_or_default(),
    })
}

/// Runs one case of health_test.yaml and compares the result with its expectation.
fn check(script: &str, case: &Case) -> Result<(), String> {
    let obj = load_yaml(&customization_dir().join(&case.input_path));
    let got = run(script, &obj).map_err(|e| format!("{}: {e}", case.input_path))?;
    if got != case.health_status {
        return Err(format!("{}: expected {:?}, got {:?}", case.input_path, case.health_status, got));
    }
    Ok(())
}

#[test]
fn every_case_of_health_test_yaml_gives_the_expected_health() {
    let script = script();
    let failures: Vec<String> = cases().iter().filter_map(|case| check(&script, case).err()).collect();
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_wrong_expectation_is_caught() {
    let script = script();
    let case = cases().into_iter().find(|c| c.input_path == "testdata/healthy.yaml").expect("a healthy case");
    assert_eq!(case.health_status.status, "Healthy");
    let mut wrong_status = case.clone();
    wrong_status.health_status.status = "Degraded".into();
    assert!(check(&script, &wrong_status).is_err(), "a wrong status must fail");
    let mut wrong_message = case;
    wrong_message.health_status.message.push_str(" (not quite)");
    assert!(check(&script, &wrong_message).is_err(), "a wrong message must fail");
}

#[test]
fn every_testdata_file_is_a_listed_case_and_every_case_has_a_file() {
    let dir = customization_dir().join("testdata");
    let on_disk: BTreeSet<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .map(|name| format!("testdata/{name}"))
        .collect();
    let cases = cases();
    let listed: BTreeSet<String> = cases.iter().map(|c| c.input_path.clone()).collect();
    assert_eq!(listed.len(), cases.len(), "health_test.yaml lists a file twice");
    let unlisted: Vec<_> = on_disk.difference(&listed).collect();
    let missing: Vec<_> = listed.difference(&on_disk).collect();
    assert!(unlisted.is_empty(), "testdata files with no case in health_test.yaml: {unlisted:?}");
    assert!(missing.is_empty(), "cases whose testdata file does not exist: {missing:?}");
    for name in &on_disk {
        assert!(name.ends_with(".yaml"), "{name}: testdata files are YAML objects");
    }
    // Every kind of answer the script gives is exercised.
    let statuses: BTreeSet<&str> = cases.iter().map(|c| c.health_status.status.as_str()).collect();
    for status in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(statuses.contains(status), "no case expects {status}");
    }
}

#[test]
fn testdata_are_microservices_the_operator_can_read() {
    for case in cases() {
        let path = customization_dir().join(&case.input_path);
        let value = load_yaml(&path);
        assert_eq!(value["apiVersion"], "flotilla.dev/v1alpha1", "{}", path.display());
        assert_eq!(value["kind"], "Microservice", "{}", path.display());
        // Every field is one the operator's own types know: the objects have the real shape.
        // (The derived type checks apiVersion and kind itself and leaves them to the caller.)
        let mut unknown = Vec::new();
        let parsed: Result<flotilla::api::Microservice, _> = serde_ignored::deserialize(value, |p| {
            let p = p.to_string();
            if p != "apiVersion" && p != "kind" {
                unknown.push(p);
            }
        });
        if let Err(e) = parsed {
            panic!("{}: not a Microservice: {e}", path.display());
        }
        assert!(unknown.is_empty(), "{}: fields Microservice does not have: {unknown:?}", path.display());
    }
}

#[test]
fn the_three_copies_of_the_script_are_identical() {
    let script = script();
    assert!(script.ends_with("return hs\n"), "health.lua must end by returning hs");
    let upstream = read(&customization_dir().join("health.lua"));
    assert!(
        script == upstream,
        "resource_customizations/flotilla.dev/Microservice/health.lua differs from config/argocd/health.lua: \
         cp config/argocd/health.lua config/argocd/resource_customizations/flotilla.dev/Microservice/"
    );

    let cm = load_yaml(&argocd_dir().join("argocd-cm-patch.yaml"));
    assert_eq!(cm["apiVersion"], "v1");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    // No namespace: `kubectl -n <ns> patch` and a kustomize Component apply it to an Argo CD
    // installed in any namespace.
    assert!(cm["metadata"].get("namespace").is_none(), "argocd-cm-patch.yaml names a namespace");
    let data = cm["data"].as_object().expect("argocd-cm-patch.yaml has data");
    assert_eq!(data.len(), 1, "the patch adds exactly one key to argocd-cm: {:?}", data.keys());
    let embedded = data["resource.customizations.health.flotilla.dev_Microservice"]
        .as_str()
        .expect("argocd-cm-patch.yaml has resource.customizations.health.flotilla.dev_Microservice");
    assert!(embedded == script, "the script in argocd-cm-patch.yaml differs from config/argocd/health.lua");

    // The kustomization applies that patch.
    let kustomization = load_yaml(&argocd_dir().join("kustomization.yaml"));
    let patches: Vec<&str> = kustomization["patches"]
        .as_array()
        .expect("kustomization.yaml has patches")
        .iter()
        .filter_map(|p| p["path"].as_str())
        .collect();
    assert_eq!(patches, ["argocd-cm-patch.yaml"]);
}

#[test]
fn the_sandbox_gives_only_what_argo_cd_gives() {
    let lua = sandbox().unwrap();
    let globals = lua.globals();
    for name in ["string", "os", "io", "math", "utf8", "coroutine", "debug", "package", "require", "dofile", "loadfile"]
    {
        let v: Value = globals.get(name).unwrap();
        assert!(v.is_nil(), "{name} must not be available to the health script");
    }
    for name in ["ipairs", "pairs", "tonumber", "tostring", "type", "next", "table"] {
        let v: Value = globals.get(name).unwrap();
        assert!(!v.is_nil(), "{name} is available in Argo CD and must be here too");
    }
    // A script that leans on the string library fails here, as it would in Argo CD.
    let obj = serde_json::json!({"metadata": {"name": "orders"}});
    let err = run(r#"return {status = string.upper("healthy")}"#, &obj).unwrap_err();
    assert!(err.contains("string"), "{err}");
    // Without the string library strings have no methods either.
    let err = run(r#"local n = obj.metadata.name; return {status = n:upper()}"#, &obj).unwrap_err();
    assert!(err.contains("attempt to index a string value"), "{err}");
}

#[test]
fn a_runaway_script_is_stopped_by_the_budget() {
    let start = Instant::now();
    let err = run("while true do end", &serde_json::json!({})).unwrap_err();
    assert!(err.contains("budget"), "{err}");
    assert!(start.elapsed() < BUDGET * 3, "stopped only after {:?}", start.elapsed());
}

#[test]
fn numbers_that_arrive_as_strings_still_compare() {
    // Argo CD hands json.Number values to Lua as strings; the script compares with tonumber.
    let script = script();
    let path = customization_dir().join("testdata/progressing-stale-generation.yaml");
    let mut obj = load_yaml(&path);
    obj["metadata"]["generation"] = "2".into();
    obj["status"]["observedGeneration"] = "1".into();
    let got = run(&script, &obj).unwrap();
    assert_eq!(got.status, "Progressing");
    assert_eq!(got.message, "waiting for the operator to observe generation 2");
}

#[test]
fn a_minimal_object_does_not_break_the_script() {
    // Whatever the API server hands over, the script answers instead of raising an error.
    let script = script();
    for obj in [
        serde_json::json!({}),
        serde_json::json!({"metadata": {}}),
        serde_json::json!({"metadata": {"generation": 1}, "status": {}}),
        serde_json::json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}),
        serde_json::json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [{}]}}),
        serde_json::json!({"metadata": {"generation": 1}, "spec": {"paused": true}, "status": {"observedGeneration": 1}}),
    ] {
        let got = run(&script, &obj).unwrap_or_else(|e| panic!("{obj}: {e}"));
        assert!(!got.message.is_empty(), "{obj}: {got:?}");
    }
}

/// Every case of health_test.yaml, run in Argo CD's own engine (util/lua: gopher-lua, Lua 5.1,
/// the application-controller's sandbox), built from Argo CD's Go module by
/// tests/gitops/healthcheck.sh: the Lua 5.4 run above cannot catch 5.4-only syntax.
#[test]
fn every_case_gives_the_expected_health_in_argo_cds_own_lua_engine() {
    let bin = healthcheck();
    let tests = customization_dir().join("health_test.yaml");
    let results = run_in_argo_cd(&bin, &argocd_dir().join("health.lua"), &tests);
    let cases = cases();
    assert_eq!(results.len(), cases.len(), "one result per case");
    for (case, got) in cases.iter().zip(results) {
        assert_eq!(got["inputPath"], case.input_path.as_str());
        assert!(got.get("error").is_none(), "{}: {}", case.input_path, got["error"]);
        let field = |k: &str| got.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let got = HealthStatus {
            status: field("status"),
            message: field("message"),
            deletion_message: field("deletionMessage"),
        };
        assert_eq!(got, case.health_status, "{} in Argo CD's engine", case.input_path);
    }

    // The engine is Lua 5.1: what Lua 5.4 accepts and it does not is refused there.
    let dir = std::env::temp_dir().join(format!("flotilla-lua51-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let lua54 = dir.join("health.lua");
    fs::write(&lua54, format!("local limit <const> = 2\n{}", script())).unwrap();
    let refused = run_in_argo_cd(&bin, &lua54, &tests);
    assert!(
        refused.iter().all(|r| r.get("error").is_some()),
        "a Lua 5.4 `<const>` ran in Argo CD's engine: {refused:?}"
    );
    fs::remove_dir_all(&dir).ok();
}

fn healthcheck() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gitops/healthcheck.sh");
    let out = std::process::Command::new("bash").arg(&script).output().expect("run tests/gitops/healthcheck.sh");
    assert!(out.status.success(), "tests/gitops/healthcheck.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn run_in_argo_cd(bin: &Path, script: &Path, tests: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(bin).arg(script).arg(tests).output().expect("run healthcheck");
    assert!(out.status.success(), "healthcheck failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}
