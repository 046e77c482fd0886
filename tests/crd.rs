//! The committed CRDs in `crds/` are exactly what the types generate.

#[test]
fn committed_crds_match_the_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/flotilla.dev.yaml");
    let generated = flotilla::api::crds_yaml().expect("CRDs serialize");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &generated).expect("write crds");
    }
    let committed = std::fs::read_to_string(path).expect("crds/flotilla.dev.yaml exists");
    assert!(
        committed == generated,
        "crds/flotilla.dev.yaml is stale: run `cargo run -- crd > crds/flotilla.dev.yaml` (or make crds) and commit it"
    );
}

#[test]
fn crd_has_subresources_columns_and_names() {
    let crd: serde_json::Value =
        serde_json::to_value(<flotilla::api::Microservice as kube::CustomResourceExt>::crd()).unwrap();
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["subresources"]["scale"]["specReplicasPath"], ".spec.replicas");
    assert_eq!(v["subresources"]["scale"]["statusReplicasPath"], ".status.replicas");
    assert_eq!(v["subresources"]["scale"]["labelSelectorPath"], ".status.selector");
    assert!(v["subresources"]["status"].is_object());
    let columns: Vec<&str> =
        v["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Ready", "Replicas", "URL", "Age"]);
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ms");
    assert_eq!(crd["spec"]["names"]["categories"][0], "flotilla");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    let dc = serde_json::to_value(<flotilla::api::DatabaseClass as kube::CustomResourceExt>::crd()).unwrap();
    assert_eq!(dc["spec"]["scope"], "Cluster");
}

/// Defaults in the spec make GitOps tools show a perpetual diff; the schema has none, except
/// the status's `{observedGeneration: 0}`, which no one applies and which makes kstatus wait for
/// the operator's first report.
#[test]
fn schema_has_no_defaults_but_the_status_one() {
    let crd = serde_json::to_value(<flotilla::api::Microservice as kube::CustomResourceExt>::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    assert_eq!(schema["properties"]["status"]["default"], serde_json::json!({"observedGeneration": 0}));
    fn walk(v: &serde_json::Value, path: &str) {
        if let Some(o) = v.as_object() {
            let allowed = path == "schema.properties.status";
            assert!(allowed || !o.contains_key("default"), "schema default at {path}");
            for (k, c) in o {
                walk(c, &format!("{path}.{k}"));
            }
        } else if let Some(a) = v.as_array() {
            a.iter().for_each(|c| walk(c, path));
        }
    }
    walk(schema, "schema");
    let dc = serde_json::to_value(<flotilla::api::DatabaseClass as kube::CustomResourceExt>::crd()).unwrap();
    walk(&dc["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "databaseclass");
}

/// Every property of our own types carries a description: it is what `kubectl explain` shows.
#[test]
fn every_field_is_documented() {
    for crd in [
        <flotilla::api::Microservice as kube::CustomResourceExt>::crd(),
        <flotilla::api::DatabaseClass as kube::CustomResourceExt>::crd(),
    ] {
        let crd = serde_json::to_value(crd).unwrap();
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        fn walk(v: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                for (k, c) in props {
                    let p = format!("{path}.{k}");
                    if c.get("description").is_none() {
                        missing.push(p.clone());
                    }
                    walk(c, &p, missing);
                }
            }
            if let Some(items) = v.get("items") {
                walk(items, &format!("{path}[]"), missing);
            }
        }
        let mut missing = Vec::new();
        walk(spec, "spec", &mut missing);
        assert!(missing.is_empty(), "fields without a description: {missing:?}");
    }
}

/// Least privilege: the shipped RBAC names every group, resource and verb; no wildcards.
#[test]
fn rbac_has_no_wildcards() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rbac");
    let mut rules = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            for rule in v["rules"].as_array().into_iter().flatten() {
                rules += 1;
                for field in ["apiGroups", "resources", "verbs"] {
                    let values = rule[field].as_array().unwrap_or_else(|| panic!("rule without {field}: {rule}"));
                    assert!(values.iter().all(|x| x != "*"), "wildcard in {field}: {rule}");
                }
            }
            if v["kind"] == "ClusterRoleBinding" || v["kind"] == "RoleBinding" {
                assert_ne!(v["roleRef"]["name"], "cluster-admin", "no cluster-admin");
            }
        }
    }
    assert!(rules >= 10, "the rules were read");
}
