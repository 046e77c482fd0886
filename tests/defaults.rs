//! The production defaults Flotilla renders (spreading, probes, ephemeral storage, identity,
//! the database's own account and checks), and that each yields to the spec.

use std::sync::Arc;

use flotilla::api::{DatabaseClass, Microservice};
use flotilla::render::{World, preview};
use serde_json::Value;

const CLASS: &str = "apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {name: pg, annotations: {flotilla.dev/is-default-class: \"true\"}}\nspec: {engine: postgres, provisioner: embedded, embedded: {image: \"postgres:17\"}}\n";

fn render(spec: &str) -> Vec<Value> {
    let yaml = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: api, namespace: team}}\nspec:\n{spec}"
    );
    let ms: Microservice = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let class: DatabaseClass = serde_yaml_ng::from_str(CLASS).unwrap();
    let world = World {
        microservices: vec![Arc::new(ms.clone())].into(),
        database_classes: vec![Arc::new(class)],
        ..World::default()
    };
    preview(&ms, &world).unwrap_or_else(|e| panic!("{e}"))
}

fn kind<'a>(values: &'a [Value], kind: &str) -> &'a Value {
    values.iter().find(|v| v["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

fn pod(spec: &str) -> Value {
    kind(&render(spec), "Deployment")["spec"]["template"]["spec"].clone()
}

#[test]
fn replicas_prefer_other_nodes_and_zones_unless_told_otherwise() {
    let p = pod("  image: x\n  replicas: 3\n");
    let tsc = &p["topologySpreadConstraints"];
    assert_eq!(tsc.as_array().unwrap().len(), 1, "{tsc}");
    assert_eq!(tsc[0]["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(tsc[0]["whenUnsatisfiable"], "ScheduleAnyway");
    assert_eq!(tsc[0]["labelSelector"]["matchLabels"]["flotilla.dev/microservice"], "api");
    let zone = &p["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(zone[0]["podAffinityTerm"]["topologyKey"], "topology.kubernetes.io/zone", "{p}");
    assert!(p["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"].is_null());

    // One replica gets the same template: scaling never rolls the pods.
    assert_eq!(pod("  image: x\n  replicas: 1\n")["affinity"], p["affinity"]);

    let off = pod("  image: x\n  pod: {spread: Disabled}\n");
    assert!(off["topologySpreadConstraints"].is_null() && off["affinity"].is_null(), "{off}");

    // The user's constraints replace the default one; an empty list means none.
    let own = pod(
        "  image: x\n  pod: {topologySpreadConstraints: [{maxSkew: 2, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]}\n",
    );
    assert_eq!(own["topologySpreadConstraints"].as_array().unwrap().len(), 1);
    assert_eq!(own["topologySpreadConstraints"][0]["maxSkew"], 2);
    assert_eq!(
        pod("  image: x\n  pod: {topologySpreadConstraints: []}\n")["topologySpreadConstraints"],
        Value::Array(vec![])
    );

    // Node affinity is kept beside the default anti-affinity; the user's anti-affinity replaces it.
    let node = pod(
        "  image: x\n  pod: {affinity: {nodeAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 1, preference: {matchExpressions: [{key: disk, operator: In, values: [ssd]}]}}]}}}\n",
    );
    assert!(node["affinity"]["nodeAffinity"].is_object() && node["affinity"]["podAntiAffinity"].is_object(), "{node}");
    let anti = pod(
        "  image: x\n  pod: {affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {flotilla.dev/microservice: api}}}]}}}\n",
    );
    let terms = &anti["affinity"]["podAntiAffinity"];
    assert!(terms["preferredDuringSchedulingIgnoredDuringExecution"].is_null(), "{terms}");
    assert_eq!(terms["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"], "kubernetes.io/hostname");
}

#[test]
fn liveness_does_not_follow_readiness() {
    let c = &pod("  image: x\n  healthCheck: {path: /healthz}\n")["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], "http", "{c}");
    assert!(c["livenessProbe"]["httpGet"].is_null());
    assert_eq!(c["startupProbe"]["tcpSocket"]["port"], "http");
    assert_eq!(c["startupProbe"]["failureThreshold"], 60);

    let c = &pod("  image: x\n  healthCheck: {path: /ready, livenessPath: /livez}\n")["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/livez");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/livez");

    // Full probes win over the shorthand.
    let c = &pod("  image: x\n  healthCheck: {path: /h}\n  probes: {liveness: {exec: {command: [true]}}}\n")["containers"]
        [0];
    assert_eq!(c["livenessProbe"]["exec"]["command"][0], "true");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/h");
}

#[test]
fn declared_ports_get_a_tcp_readiness_check() {
    let c = &pod("  image: x\n  ports: [{name: dns, port: 53, protocol: UDP}, {name: grpc, port: 9000}]\n")["containers"]
        [0];
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], "grpc", "{c}");
    assert!(c["livenessProbe"].is_null() && c["startupProbe"].is_null(), "{c}");
    // No ports declared (the implied 8080 of a worker, perhaps listening on nothing): no checks.
    let c = &pod("  image: x\n")["containers"][0];
    assert!(c["readinessProbe"].is_null(), "{c}");
    // Only UDP: nothing to connect to.
    let c = &pod("  image: x\n  ports: [{name: dns, port: 53, protocol: UDP}]\n")["containers"][0];
    assert!(c["readinessProbe"].is_null(), "{c}");
}

#[test]
fn ephemeral_storage_is_bounded() {
    let p = pod("  image: x\n");
    let r = &p["containers"][0]["resources"];
    assert_eq!(r["requests"]["ephemeral-storage"], "128Mi");
    assert_eq!(r["limits"]["ephemeral-storage"], "1Gi");
    assert_eq!(r["limits"]["memory"], "256Mi", "the other defaults stay: {r}");
    assert_eq!(p["volumes"][0]["emptyDir"]["sizeLimit"], "512Mi");

    // Given resources without ephemeral-storage get it added; given ephemeral-storage is kept.
    let r = &pod("  image: x\n  resources: {requests: {cpu: 1}}\n")["containers"][0]["resources"];
    assert_eq!(r["limits"]["ephemeral-storage"], "1Gi", "{r}");
    assert!(r["limits"]["memory"].is_null(), "the given resources replace the memory default: {r}");
    let p = pod("  image: x\n  resources: {requests: {ephemeral-storage: 50Mi}, limits: {ephemeral-storage: 200Mi}}\n");
    let r = &p["containers"][0]["resources"];
    assert_eq!(
        (&r["requests"]["ephemeral-storage"], &r["limits"]["ephemeral-storage"]),
        (&"50Mi".into(), &"200Mi".into())
    );
    // A limit below the default /tmp size bounds /tmp too.
    assert_eq!(p["volumes"][0]["emptyDir"]["sizeLimit"], "200Mi");
    let requests_only = pod("  image: x\n  resources: {requests: {ephemeral-storage: 50Mi}}\n");
    assert!(requests_only["containers"][0]["resources"]["limits"].is_null(), "a request alone is the user's choice");
    assert_eq!(pod("  image: x\n  pod: {tmpSizeLimit: 64Mi}\n")["volumes"][0]["emptyDir"]["sizeLimit"], "64Mi");
}

#[test]
fn the_pod_identity_is_set_when_given() {
    let p = pod("  image: x\n");
    assert_eq!(p["securityContext"]["runAsNonRoot"], true);
    assert!(p["securityContext"]["runAsUser"].is_null(), "the image's user by default");
    let p = pod("  image: x\n  pod: {securityContext: {runAsUser: 10001, runAsGroup: 10002, fsGroup: 10003}}\n");
    let sc = &p["securityContext"];
    assert_eq!((&sc["runAsUser"], &sc["runAsGroup"], &sc["fsGroup"]), (&10001.into(), &10002.into(), &10003.into()));
    assert_eq!(sc["runAsNonRoot"], true);
}

#[test]
fn the_database_has_its_own_account_checks_and_password_file() {
    let values = render("  image: x\n  database: {}\n");
    let accounts: Vec<&Value> = values.iter().filter(|v| v["kind"] == "ServiceAccount").collect();
    let db_account = accounts.iter().find(|a| a["metadata"]["name"] == "api-db").expect("api-db ServiceAccount");
    assert_eq!(db_account["automountServiceAccountToken"], false);
    let sts = kind(&values, "StatefulSet");
    let p = &sts["spec"]["template"]["spec"];
    assert_eq!(p["serviceAccountName"], "api-db");
    assert_eq!(p["automountServiceAccountToken"], false);
    let c = &p["containers"][0];
    assert_eq!(c["readinessProbe"]["exec"]["command"][0], "pg_isready", "{c}");
    assert!(c["livenessProbe"]["exec"].is_object(), "{c}");
    assert_ne!(c["readinessProbe"]["exec"], c["livenessProbe"]["exec"]);
    assert_eq!(c["startupProbe"]["tcpSocket"]["port"], 5432);
    let env = c["env"].as_array().unwrap();
    assert!(env.iter().all(|e| e["name"] != "POSTGRES_PASSWORD"), "no password in the environment: {env:?}");
    let file = env.iter().find(|e| e["name"] == "POSTGRES_PASSWORD_FILE").expect("POSTGRES_PASSWORD_FILE");
    let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "credentials").unwrap();
    assert!(file["value"].as_str().unwrap().starts_with(mount["mountPath"].as_str().unwrap()));
    assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "2Gi");
    for v in p["volumes"].as_array().unwrap().iter().filter(|v| v["emptyDir"].is_object()) {
        assert!(v["emptyDir"]["sizeLimit"].is_string(), "{v}");
    }
    // The claim carries the pods' name label, and the service's selector label that marks its data.
    let labels = &sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"];
    assert_eq!(
        labels["app.kubernetes.io/name"],
        sts["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    assert_eq!(labels["flotilla.dev/microservice"], "api");
}
