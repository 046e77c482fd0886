//! `spec.image`, `spec.env` and `spec.envFrom`: what the container runs, and its environment.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvFromSource, EnvVar, EnvVarSource};

use super::names::{dns1123_subdomain, label_key};

/// `spec.image`: present, without whitespace.
pub(super) fn image(image: &str, err: &mut impl FnMut(String, String)) {
    if image.trim().is_empty() {
        err("spec.image".into(), "is required: the container image to run".into());
    } else if image.chars().any(char::is_whitespace) {
        err("spec.image".into(), format!("{image:?} must not contain whitespace"));
    }
}

/// `spec.env`: each name well-formed, set once, and not one of `env_names` (the names Flotilla
/// sets, each with the field that sets it); a value or a valueFrom.
pub(super) fn env(env: &[EnvVar], env_names: &BTreeMap<String, String>, err: &mut impl FnMut(String, String)) {
    let mut seen_env: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, e) in env.iter().enumerate() {
        let path = format!("spec.env[{i}]");
        if let Some(dep) = env_names.get(&e.name) {
            err(format!("{path}.name"), format!("{} is set by {dep}; choose another name", e.name));
        } else if let Some(first) = seen_env.insert(e.name.as_str(), i) {
            err(format!("{path}.name"), format!("{:?} is already set by spec.env[{first}]", e.name));
        }
        if e.name.is_empty() || e.name.contains('=') || !e.name.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
            err(format!("{path}.name"), format!("{:?} must be printable ASCII characters other than '='", e.name));
        }
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) && e.value_from.is_some() {
            err(path.clone(), "set value or valueFrom, not both".into());
        }
        if let Some(from) = &e.value_from {
            env_source(&format!("{path}.valueFrom"), from, err);
        }
    }
}

/// An env var's `valueFrom`, as the API server checks it in a container.
fn env_source(path: &str, from: &EnvVarSource, err: &mut impl FnMut(String, String)) {
    let set = [
        from.field_ref.is_some(),
        from.resource_field_ref.is_some(),
        from.config_map_key_ref.is_some(),
        from.secret_key_ref.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        err(
            path.to_string(),
            "must set exactly one of fieldRef, resourceFieldRef, configMapKeyRef and secretKeyRef".into(),
        );
    }
    if let Some(f) = &from.field_ref {
        let p = f.field_path.as_str();
        let subscripted = ["metadata.labels['", "metadata.annotations['"]
            .iter()
            .find_map(|pre| p.strip_prefix(pre).and_then(|rest| rest.strip_suffix("']")));
        let ok = matches!(
            p,
            "metadata.name"
                | "metadata.namespace"
                | "metadata.uid"
                | "metadata.labels"
                | "metadata.annotations"
                | "spec.nodeName"
                | "spec.serviceAccountName"
                | "status.hostIP"
                | "status.hostIPs"
                | "status.podIP"
                | "status.podIPs"
        ) || subscripted.is_some_and(|k| label_key(k).is_none());
        if !ok {
            err(
                format!("{path}.fieldRef.fieldPath"),
                format!(
                    "{p:?} is not a field a container can read: metadata.name, metadata.namespace, metadata.uid, metadata.labels['<key>'], metadata.annotations['<key>'], spec.nodeName, spec.serviceAccountName, status.hostIP(s), status.podIP(s)"
                ),
            );
        }
    }
    if let Some(r) = &from.resource_field_ref {
        let ok = matches!(
            r.resource.as_str(),
            "limits.cpu"
                | "limits.memory"
                | "limits.ephemeral-storage"
                | "requests.cpu"
                | "requests.memory"
                | "requests.ephemeral-storage"
        ) || r.resource.starts_with("limits.hugepages-")
            || r.resource.starts_with("requests.hugepages-");
        if !ok {
            err(
                format!("{path}.resourceFieldRef.resource"),
                format!("{:?} must be limits.<cpu|memory|ephemeral-storage> or requests.<…>", r.resource),
            );
        }
    }
    for (field, name, key) in [
        (
            "configMapKeyRef",
            from.config_map_key_ref.as_ref().map(|r| &r.name),
            from.config_map_key_ref.as_ref().map(|r| &r.key),
        ),
        ("secretKeyRef", from.secret_key_ref.as_ref().map(|r| &r.name), from.secret_key_ref.as_ref().map(|r| &r.key)),
    ] {
        let (Some(name), Some(key)) = (name, key) else { continue };
        if let Some(why) = dns1123_subdomain(name) {
            err(format!("{path}.{field}.name"), format!("{name:?} {why}"));
        }
        if key.is_empty()
            || key.len() > 253
            || key == "."
            || key == ".."
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            err(
                format!("{path}.{field}.key"),
                format!("{key:?} must be 1 to 253 of the characters a-z, A-Z, 0-9, '-', '_' and '.'"),
            );
        }
    }
}

/// `spec.envFrom`: exactly one well-named ConfigMap or Secret each, and a printable prefix.
pub(super) fn env_from(env_from: &[EnvFromSource], err: &mut impl FnMut(String, String)) {
    for (i, e) in env_from.iter().enumerate() {
        let path = format!("spec.envFrom[{i}]");
        let refs = [
            ("configMapRef", e.config_map_ref.as_ref().map(|r| &r.name)),
            ("secretRef", e.secret_ref.as_ref().map(|r| &r.name)),
        ];
        if refs.iter().filter(|(_, r)| r.is_some()).count() != 1 {
            err(path.clone(), "must set exactly one of configMapRef and secretRef".into());
        }
        for (field, name) in refs {
            if let Some(name) = name
                && let Some(why) = dns1123_subdomain(name)
            {
                err(format!("{path}.{field}.name"), format!("{name:?} {why}"));
            }
        }
        if let Some(p) = &e.prefix
            && (p.contains('=') || !p.chars().all(|c| c.is_ascii_graphic()))
        {
            err(format!("{path}.prefix"), format!("{p:?} must be printable ASCII characters other than '='"));
        }
    }
}
