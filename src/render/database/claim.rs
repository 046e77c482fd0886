//! The claim provisioner: an object of another operator's kind (CloudNativePG Cluster, a
//! Crossplane claim, ...) made from the class's template.

use serde_json::Value;

use super::object_name;
use crate::api::DatabaseSpec;
use crate::api::databaseclass::ClaimProvisioner;
use crate::render::Input;
use crate::validate::dns1123_label;

fn substitute(v: &Value, vars: &[(&str, &str)]) -> Value {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            for (k, val) in vars {
                s = s.replace(&format!("${{{k}}}"), val);
            }
            Value::String(s)
        }
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, vars)).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, x)| (k.clone(), substitute(x, vars))).collect()),
        other => other.clone(),
    }
}

fn vars<'a>(input: &'a Input, name: &'a str, storage: &'a str) -> [(&'static str, &'a str); 3] {
    [("name", name), ("namespace", input.namespace), ("storage", storage)]
}

/// The claim object, validated: `${name}` is the claim's own name `<service>-db`.
pub fn claim_object(input: &Input, c: &ClaimProvisioner, db: &DatabaseSpec) -> Result<Value, String> {
    let name = object_name(input.name);
    let storage = db.storage().to_string();
    let spec = substitute(&c.spec, &vars(input, &name, &storage));
    if !spec.is_object() {
        return Err("claim.spec must be an object".into());
    }
    if let Some(left) = find_placeholder(&spec) {
        return Err(format!(
            "claim.spec still contains {left:?} after substitution; only ${{name}}, ${{namespace}} and ${{storage}} are known"
        ));
    }
    if !c.api_version.split_once('/').is_some_and(|(g, v)| !g.is_empty() && !v.is_empty()) {
        return Err(format!("claim.apiVersion {:?} must be group/version", c.api_version));
    }
    if c.kind.is_empty() || !c.kind.starts_with(|ch: char| ch.is_ascii_uppercase()) {
        return Err(format!("claim.kind {:?} must be a Kind such as Cluster", c.kind));
    }
    let meta = serde_json::to_value(input.data_meta(&name)).map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "apiVersion": c.api_version,
        "kind": c.kind,
        "metadata": meta,
        "spec": spec,
    }))
}

fn find_placeholder(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.find("${").map(|i| s[i..].chars().take_while(|c| *c != '}').chain(['}']).collect()),
        Value::Array(a) => a.iter().find_map(find_placeholder),
        Value::Object(o) => o.values().find_map(find_placeholder),
        _ => None,
    }
}

/// Name of the connection Secret the provisioner writes.
pub fn connection_secret_name(input: &Input, c: &ClaimProvisioner) -> Result<String, String> {
    let name = object_name(input.name);
    let s = c.connection_secret.name.replace("${name}", &name).replace("${namespace}", input.namespace);
    for part in s.split('.') {
        if let Some(why) = dns1123_label(part, 63) {
            return Err(format!("claim.connectionSecret.name gives {s:?}, which {why}"));
        }
    }
    Ok(s)
}

/// The claim's ready condition type (default `Ready`) and whether the live claim has it True.
pub fn ready_condition(c: &ClaimProvisioner, live: &Value) -> (String, bool) {
    let type_ = c.ready_condition.clone().unwrap_or_else(|| "Ready".into());
    let ready = live
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == type_.as_str() && c["status"] == "True"));
    (type_, ready)
}
