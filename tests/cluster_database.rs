//! A database per service on the real cluster: embedded databases of each engine, claim
//! provisioners (CloudNativePG's Cluster, judged by CNPG's real CRD, and a Crossplane claim,
//! judged by the claim CRD Crossplane generates from the test's XRD, with the test playing the
//! database operator), the binding, Ready waiting for the database, retention and adoption, the
//! Delete policy, deletion while the operator is down, class immutability, storage expansion,
//! and no credentials in logs or Events. Needs `make cluster-up`; the two claim CRDs also need Go
//! (`tests/cluster/claim-crds.sh`, `tests/cluster/crossplane-claim-crd.sh`).

mod operator;
mod support;
#[path = "support/tool.rs"]
mod tool;

use std::time::Duration;

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use operator::{Operator, OperatorOptions, apply_ms, apply_yaml, setup};
use serde_json::json;
use support::wait_for;

/// An embedded DatabaseClass named `name` for `engine`.
async fn embedded_class(client: &Client, name: &str, engine: &str, image: &str) {
    apply_yaml(
        client,
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {name}}}\n\
             spec: {{engine: {engine}, provisioner: embedded, embedded: {{image: '{image}', storageClassName: standard}}}}\n"
        ),
        None,
    )
    .await;
}

async fn delete_class(client: &Client, name: &str) {
    let api: Api<flotilla::api::DatabaseClass> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Deletes the named DatabaseClasses (cluster-scoped: no namespace deletion removes them) when
/// dropped, also when the test fails: a leftover default class would change later runs.
fn classes_cleanup(names: Vec<String>) -> support::Cleanup {
    support::Cleanup::new(move |client| async move {
        for name in names {
            delete_class(&client, &name).await;
        }
    })
}

async fn wait_cond(api: &Api<Microservice>, name: &str, type_: &str, status: &str) -> Microservice {
    wait_reason(api, name, type_, status, None).await
}

/// Waits until condition `type_` has `status` (and `reason`, when given) for the current
/// generation: a condition passes through other reasons on its way (a class the operator's
/// cache has not seen yet, a claim kind not yet discovered), so a test names the one it checks.
async fn wait_reason(
    api: &Api<Microservice>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> Microservice {
    let what = format!("{name} {type_}={status}{}", reason.map(|r| format!(" ({r})")).unwrap_or_default());
    wait_for(&what, Duration::from_secs(90), || async {
        let ms = api.get(name).await?;
        let ok = ms.status.as_ref().is_some_and(|s| {
            s.observed_generation == ms.metadata.generation
                && s.conditions
                    .iter()
                    .any(|c| c.type_ == type_ && c.status == status && reason.is_none_or(|r| c.reason == r))
        });
        if ok { anyhow::Ok(true) } else { Err(anyhow!("status: {:?}", ms.status)) }
    })
    .await;
    api.get(name).await.expect("get Microservice")
}

fn text(s: &Secret, key: &str) -> String {
    s.data.as_ref().and_then(|d| d.get(key)).map(|v| String::from_utf8_lossy(&v.0).into_owned()).unwrap_or_default()
}

fn env_secret_ref(d: &Deployment, env: &str) -> Option<(String, String)> {
    let e = d.spec.as_ref()?.template.spec.as_ref()?.containers[0].env.as_ref()?.iter().find(|e| e.name == env)?;
    let r = e.value_from.as_ref()?.secret_key_ref.as_ref()?;
    Some((r.name.clone(), r.key.clone()))
}

#[tokio::test]
async fn embedded_databases_of_each_engine_are_bound_and_ready() {
    let Some(operator::Setup { client, ns, op, api }) = setup("db-embedded").await else { return };
    let n = ns.name().to_string();
    let _classes = classes_cleanup(["postgres", "mysql", "redis"].map(|e| format!("{e}-{n}")).to_vec());
    let engines = [
        ("postgres", "postgres:17", 5432, "postgresql"),
        ("mysql", "mysql:8.4", 3306, "mysql"),
        ("redis", "redis:7", 6379, "redis"),
    ];
    for (engine, image, _, _) in engines {
        embedded_class(&client, &format!("{engine}-{n}"), engine, image).await;
        apply_ms(&api, &format!("svc-{engine}"), json!({"image": "registry.example/app:1", "database": {"class": format!("{engine}-{n}"), "storage": "2Gi"}}))
            .await
            .unwrap();
    }
    let secrets = ns.api::<Secret>();
    let mut passwords = Vec::new();
    for (engine, image, port, type_) in engines {
        let svc = format!("svc-{engine}");
        let ms = wait_cond(&api, &svc, "Ready", "True").await;
        let db = ms.status.as_ref().unwrap().database.clone().unwrap();
        assert_eq!(db.phase.as_deref(), Some("Ready"));
        assert_eq!(db.secret_name, Some(format!("{svc}-db")));
        assert_eq!(db.class, Some(format!("{engine}-{n}")));

        let sts = ns.api::<StatefulSet>().get(&format!("{svc}-db")).await.unwrap();
        let spec = sts.spec.as_ref().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some(image));
        let retention = spec.persistent_volume_claim_retention_policy.as_ref().unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        let psc = spec.template.spec.as_ref().unwrap().security_context.as_ref().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        // Its own ServiceAccount, without a token, made before its pod (which would otherwise be
        // refused); no password in the environment where the engine reads a file.
        let sa = ns.api::<ServiceAccount>().get(&format!("{svc}-db")).await.expect("the database's ServiceAccount");
        assert_eq!(sa.automount_service_account_token, Some(false));
        assert_eq!(sa.owner_references()[0].name, svc);
        let pod = ns.api::<Pod>().get(&format!("{svc}-db-0")).await.expect("the database's pod");
        let pod_spec = pod.spec.unwrap();
        assert_eq!(pod_spec.service_account_name.as_deref(), Some(format!("{svc}-db").as_str()));
        let env = pod_spec.containers[0].env.clone().unwrap_or_default();
        if engine != "redis" {
            let from_password = |e: &&k8s_openapi::api::core::v1::EnvVar| {
                e.value_from.as_ref().and_then(|v| v.secret_key_ref.as_ref()).is_some_and(|r| r.key == "password")
            };
            assert!(!env.iter().any(|e| from_password(&e)), "{engine}: the password in a variable: {env:?}");
            assert!(env.iter().any(|e| e.name.ends_with("_PASSWORD_FILE")), "{engine}: no password file: {env:?}");
        }

        // The claim is really bound by the cluster's binder, at the requested size.
        let pvc = ns.api::<PersistentVolumeClaim>().get(&format!("data-{svc}-db-0")).await.unwrap();
        assert_eq!(pvc.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Bound"));
        assert_eq!(
            pvc.spec.as_ref().unwrap().resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
            "2Gi"
        );

        let creds = secrets.get(&format!("{svc}-db-credentials")).await.unwrap();
        let password = text(&creds, "password");
        assert_eq!(password.len(), 32, "a generated password");
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
        passwords.push(password.clone());

        let binding = secrets.get(&format!("{svc}-db")).await.unwrap();
        assert_eq!(binding.type_.as_deref(), Some(format!("servicebinding.io/{type_}").as_str()));
        assert_eq!(text(&binding, "type"), type_);
        assert_eq!(text(&binding, "host"), format!("{svc}-db.{n}.svc.cluster.local"));
        assert_eq!(text(&binding, "port"), port.to_string());
        assert_eq!(text(&binding, "password"), password);
        let uri = text(&binding, "uri");
        assert!(
            uri.starts_with(&format!(
                "{type_}://{}:{password}@{svc}-db.{n}.svc.cluster.local:{port}/",
                text(&binding, "username")
            )),
            "{uri}"
        );

        let d = ns.api::<Deployment>().get(&svc).await.unwrap();
        assert_eq!(env_secret_ref(&d, "DATABASE_URL"), Some((format!("{svc}-db"), "uri".into())));
        assert_eq!(env_secret_ref(&d, "DB_PASSWORD"), Some((format!("{svc}-db"), "password".into())));
        let tmpl = d.spec.as_ref().unwrap().template.clone();
        assert!(tmpl.metadata.unwrap().annotations.unwrap().contains_key("flotilla.dev/database-credentials"));
        let mounts = tmpl.spec.unwrap().containers[0].volume_mounts.clone().unwrap();
        assert!(mounts.iter().any(|m| m.mount_path == "/bindings/db"));

        // Only the service reaches its database, and the service may reach it.
        let dbnp = ns.api::<NetworkPolicy>().get(&format!("{svc}-db")).await.unwrap();
        let rule = serde_json::to_string(&dbnp.spec.unwrap().ingress).unwrap();
        assert!(
            rule.contains(&format!("\"flotilla.dev/microservice\":\"{svc}\"")) && rule.contains(&port.to_string()),
            "{rule}"
        );
        let np = ns.api::<NetworkPolicy>().get(&svc).await.unwrap();
        let egress = serde_json::to_string(&np.spec.unwrap().egress).unwrap();
        assert!(egress.contains(&format!("\"flotilla.dev/database\":\"{svc}\"")), "{egress}");
    }

    // Pods roll when the credentials change, not otherwise.
    let deployments = ns.api::<Deployment>();
    let hash = |d: &Deployment| {
        d.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["flotilla.dev/database-credentials"].clone()
    };
    let before = deployments.get("svc-postgres").await.unwrap();
    apply_ms(&api, "svc-postgres", json!({"image": "registry.example/app:1", "replicas": 1, "database": {"class": format!("postgres-{n}"), "storage": "2Gi"}})).await.unwrap();
    wait_cond(&api, "svc-postgres", "Ready", "True").await;
    assert_eq!(hash(&deployments.get("svc-postgres").await.unwrap()), hash(&before), "no credential change, no roll");
    // A merge patch of the one key: a read-modify-replace would race the operator's own writes.
    let rotate = json!({"stringData": {"password": "rotatedRotatedRotated123"}});
    secrets.patch("svc-postgres-db-credentials", &PatchParams::default(), &Patch::Merge(&rotate)).await.unwrap();
    passwords.push("rotatedRotatedRotated123".into());
    wait_for("the pods to roll to the new credentials", Duration::from_secs(30), || async {
        anyhow::Ok(hash(&deployments.get("svc-postgres").await?) != hash(&before))
    })
    .await;
    assert_eq!(text(&secrets.get("svc-postgres-db").await.unwrap(), "password"), "rotatedRotatedRotated123");

    // No credentials in the operator's logs or in Events.
    let logs = op.logs();
    let events = serde_json::to_string(&ns.api::<Event>().list(&ListParams::default()).await.unwrap().items).unwrap();
    for p in &passwords {
        assert!(!logs.contains(p.as_str()), "a password is in the operator log");
        assert!(!events.contains(p.as_str()), "a password is in an Event");
    }
    ns.cleanup().await;
}

/// The YAML file whose path `script` (under `tests/cluster/`) prints. Panics when it cannot be
/// had: with a cluster at hand a claim test must not pass on a stand-in that takes anything.
async fn script_yaml(script: &'static str, what: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        let path = tool::build(&format!("tests/cluster/{script}"), what).unwrap_or_else(|e| panic!("{e}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{script} printed {path:?}: {e}"))
    })
    .await
    .unwrap_or_else(|e| panic!("getting {what}: {e}"))
}

/// CloudNativePG's own `clusters.postgresql.cnpg.io` CRD, from its Go module at the version
/// `tests/cluster/claim-crds.sh` pins (downloaded once into Go's module cache), so that the API
/// server judges the Cluster Flotilla renders by CNPG's real schema.
async fn cnpg_cluster_crd() -> String {
    script_yaml("claim-crds.sh", "CloudNativePG's Cluster CRD").await
}

/// The `postgresqlinstances.database.example.org` claim CRD that Crossplane generates from the
/// XRD in `tests/fixtures/crossplane/xrd.yaml`: Crossplane has no static claim CRD, its
/// controller derives one from each XRD at run time, and `tests/cluster/crossplane-claim-crd.sh`
/// runs the same generator (`xcrd.ForCompositeResourceClaim`, at the version it pins). The
/// API server then judges the claim Flotilla renders by the XRD's `parameters` and Crossplane's
/// own claim fields (`compositionSelector`, `writeConnectionSecretToRef`, ...).
async fn crossplane_claim_crd() -> String {
    script_yaml("crossplane-claim-crd.sh", "Crossplane's generated claim CRD").await
}

/// The operator's RBAC for both claim kinds.
const CLAIM_RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: flotilla-test-claims}
rules:
  - apiGroups: [postgresql.cnpg.io, database.example.org]
    resources: [clusters, postgresqlinstances]
    verbs: [get, list, watch, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: flotilla-test-claims}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flotilla-test-claims}
subjects: [{kind: ServiceAccount, name: flotilla, namespace: flotilla-system}]
"#;

#[tokio::test]
async fn claim_provisioners_cnpg_and_crossplane() {
    let Some(operator::Setup { client, ns, op: _op, api }) = setup("db-claim").await else { return };
    let n = ns.name().to_string();
    let _classes = classes_cleanup(vec![format!("cnpg-{n}"), format!("xp-{n}")]);
    // Server-side: the real CRD (270 kB as JSON) is more than client-side apply's last-applied
    // annotation may hold (256 KiB).
    apply_yaml(&client, &cnpg_cluster_crd().await, None).await;
    apply_yaml(&client, &crossplane_claim_crd().await, None).await;
    apply_yaml(&client, CLAIM_RBAC, None).await;
    operator::crds_established(&client, &["clusters.postgresql.cnpg.io", "postgresqlinstances.database.example.org"])
        .await;
    // The API server now judges Clusters by CloudNativePG's schema, not by a stand-in that takes
    // anything: a Cluster with an invalid value is refused (a dry run, nothing is stored).
    let clusters_ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("postgresql.cnpg.io", "v1", "Cluster"), "clusters");
    let clusters: Api<DynamicObject> = Api::namespaced_with(client.clone(), &n, &clusters_ar);
    for (spec, field) in [
        (json!({"instances": "many"}), "spec.instances"),
        (json!({"instances": 1, "primaryUpdateStrategy": "sometimes"}), "spec.primaryUpdateStrategy"),
    ] {
        let invalid: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "invalid"}, "spec": spec
        }))
        .unwrap();
        let dry_run = PostParams { dry_run: true, ..Default::default() };
        match clusters.create(&dry_run, &invalid).await {
            Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(field) => {}
            other => panic!("a Cluster with an invalid {field} must be refused by CNPG's schema: {other:?}"),
        }
    }
    // Likewise for the Crossplane claim: the XRD's `parameters` and the fields Crossplane adds to
    // every claim are checked. Each spec differs from the one Flotilla renders in one field.
    let claims_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("database.example.org", "v1alpha1", "PostgreSQLInstance"),
        "postgresqlinstances",
    );
    let xp_claims: Api<DynamicObject> = Api::namespaced_with(client.clone(), &n, &claims_ar);
    let claim = |spec: serde_json::Value| -> DynamicObject {
        let mut full = json!({"parameters": {"storageGB": "3Gi"}, "writeConnectionSecretToRef": {"name": "invalid-conn"}, "compositionSelector": {"matchLabels": {"ns": n}}});
        full.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "database.example.org/v1alpha1", "kind": "PostgreSQLInstance", "metadata": {"name": "invalid"}, "spec": full
        }))
        .unwrap()
    };
    for (spec, field) in [
        (json!({"parameters": {"storageGB": 3}}), "spec.parameters.storageGB"),
        (json!({"parameters": {"storageGB": "plenty"}}), "spec.parameters.storageGB"),
        (json!({"parameters": {}}), "spec.parameters.storageGB"),
        (json!({"writeConnectionSecretToRef": {"namespace": "elsewhere"}}), "spec.writeConnectionSecretToRef.name"),
        (json!({"compositionSelector": {"matchLabels": {"ns": 1}}}), "spec.compositionSelector.matchLabels.ns"),
        (json!({"compositeDeletePolicy": "Sometimes"}), "spec.compositeDeletePolicy"),
    ] {
        let dry_run = PostParams { dry_run: true, ..Default::default() };
        match xp_claims.create(&dry_run, &claim(spec)).await {
            Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(field) => {}
            other => panic!("a claim with an invalid {field} must be refused by Crossplane's schema: {other:?}"),
        }
    }
    // A field the schema does not know is dropped (the stand-in kept anything), and refused
    // where the client asks for strict field validation (as a server-side apply, which the API
    // server refuses with a 500, not a 422, when the schema cannot type the body).
    let stored = xp_claims
        .create(
            &PostParams { dry_run: true, ..Default::default() },
            &claim(json!({"parameters": {"storageGB": "3Gi", "size": "3Gi"}})),
        )
        .await
        .expect("a claim with an unknown field is pruned, not refused");
    assert_eq!(stored.data["spec"]["parameters"], json!({"storageGB": "3Gi"}), "pruned by the schema");
    let strict = PatchParams::apply("flotilla-tests").dry_run().validation_strict();
    match xp_claims
        .patch("invalid", &strict, &Patch::Apply(&claim(json!({"parameters": {"storageGB": "3Gi", "size": "3Gi"}}))))
        .await
    {
        Err(kube::Error::Api(e)) if e.message.contains(".spec.parameters.size: field not declared in schema") => {}
        other => panic!("an unknown field under strict field validation must be refused: {other:?}"),
    }
    apply_yaml(
        &client,
        &format!(
            r#"
apiVersion: flotilla.dev/v1alpha1
kind: DatabaseClass
metadata: {{name: cnpg-{n}}}
spec:
  engine: postgres
  provisioner: claim
  claim:
    apiVersion: postgresql.cnpg.io/v1
    kind: Cluster
    spec: {{instances: 1, storage: {{size: "${{storage}}"}}, bootstrap: {{initdb: {{database: app, owner: app}}}}}}
    connectionSecret: {{name: "${{name}}-app", keys: {{database: dbname}}}}
    readyCondition: Ready
    podSelector: {{cnpg.io/cluster: "${{name}}"}}
    port: 5432
---
apiVersion: flotilla.dev/v1alpha1
kind: DatabaseClass
metadata: {{name: xp-{n}}}
spec:
  engine: postgres
  provisioner: claim
  claim:
    apiVersion: database.example.org/v1alpha1
    kind: PostgreSQLInstance
    spec: {{parameters: {{storageGB: "${{storage}}"}}, writeConnectionSecretToRef: {{name: "${{name}}-conn"}}, compositionSelector: {{matchLabels: {{ns: "${{namespace}}"}}}}}}
    connectionSecret: {{name: "${{name}}-conn", keys: {{host: endpoint, port: port, username: username, password: password, database: database}}}}
    readyCondition: Ready
"#
        ),
        None,
    )
    .await;

    for (svc, class, group, version, plural, secret, host_key) in [
        ("orders", format!("cnpg-{n}"), "postgresql.cnpg.io", "v1", "clusters", "orders-db-app", "host"),
        (
            "ledger",
            format!("xp-{n}"),
            "database.example.org",
            "v1alpha1",
            "postgresqlinstances",
            "ledger-db-conn",
            "endpoint",
        ),
    ] {
        apply_ms(&api, svc, json!({"image": "registry.example/app:1", "database": {"class": class, "storage": "3Gi"}}))
            .await
            .unwrap();
        // Ready waits for the database.
        let ms = wait_reason(&api, svc, "DatabaseReady", "False", Some("ClaimNotReady")).await;
        let ready = ms.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Ready").unwrap().clone();
        assert_eq!(ready.status, "False");

        let kind = if plural == "clusters" { "Cluster" } else { "PostgreSQLInstance" };
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let claims: Api<DynamicObject> = Api::namespaced_with(client.clone(), &n, &ar);
        let claim = claims.get(&format!("{svc}-db")).await.expect("the claim object exists");
        let spec = serde_json::to_value(&claim.data["spec"]).unwrap();
        if plural == "clusters" {
            assert_eq!(spec["storage"]["size"], "3Gi", "${{storage}} substituted");
        } else {
            // Kept by the schema (an unknown field would have been pruned).
            assert_eq!(spec["parameters"]["storageGB"], "3Gi", "${{storage}} substituted");
            assert_eq!(spec["writeConnectionSecretToRef"]["name"], "ledger-db-conn", "${{name}} substituted");
            assert_eq!(spec["compositionSelector"]["matchLabels"]["ns"], n.as_str(), "${{namespace}} substituted");
        }
        // The claim holds the data: labelled for the service, owned by no one, so no garbage
        // collection (a foreground deletion above all) can take it before the finalizer decides.
        assert!(claim.owner_references().is_empty(), "{:?}", claim.owner_references());
        assert_eq!(claim.labels().get("flotilla.dev/microservice").map(String::as_str), Some(svc));

        // The test plays the database operator: the connection Secret, then the Ready condition.
        let data = json!({host_key: format!("{svc}-db-rw.{n}.svc"), "port": "5432", "username": "app", "password": "s3cr3t-from-operator", if plural == "clusters" { "dbname" } else { "database" }: "app"});
        let string_data: serde_json::Map<String, serde_json::Value> = data.as_object().unwrap().clone();
        ns.api::<Secret>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": secret}, "stringData": string_data})).unwrap(),
            )
            .await
            .unwrap();
        // Through the status subresource, with every field of a metav1.Condition that
        // CloudNativePG's schema requires.
        let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let ready = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "ClusterIsReady", "message": "", "lastTransitionTime": now}
        ]}});
        claims.patch_status(&format!("{svc}-db"), &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();

        let ms = wait_cond(&api, svc, "Ready", "True").await;
        assert_eq!(ms.status.unwrap().database.unwrap().phase.as_deref(), Some("Ready"));
        let binding = ns.api::<Secret>().get(&format!("{svc}-db")).await.unwrap();
        assert_eq!(text(&binding, "host"), format!("{svc}-db-rw.{n}.svc"));
        assert_eq!(text(&binding, "database"), "app");
        assert_eq!(text(&binding, "provider"), group);
        assert_eq!(
            text(&binding, "uri"),
            format!("postgresql://app:s3cr3t-from-operator@{svc}-db-rw.{n}.svc:5432/app")
        );
    }
    // The CloudNativePG class names the database pods: the service's egress reaches them.
    let np = ns.api::<NetworkPolicy>().get("orders").await.unwrap();
    assert!(serde_json::to_string(&np.spec.unwrap().egress).unwrap().contains("\"cnpg.io/cluster\":\"orders-db\""));

    // Deleted under Retain (the default), the claim object stays, marked with where it came
    // from; under Delete, it goes.
    let gvk = |kind: &str, group: &str, version: &str| GroupVersionKind::gvk(group, version, kind);
    let cnpg: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &n,
        &ApiResource::from_gvk_with_plural(&gvk("Cluster", "postgresql.cnpg.io", "v1"), "clusters"),
    );
    let xp: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &n,
        &ApiResource::from_gvk_with_plural(
            &gvk("PostgreSQLInstance", "database.example.org", "v1alpha1"),
            "postgresqlinstances",
        ),
    );
    apply_ms(
        &api,
        "ledger",
        json!({"image": "registry.example/app:1", "database": {"class": format!("xp-{n}"), "storage": "3Gi", "deletionPolicy": "Delete"}}),
    )
    .await
    .unwrap();
    wait_for("ledger's deletionPolicy seen", Duration::from_secs(30), || async {
        let ms = api.get("ledger").await?;
        anyhow::Ok(ms.status.and_then(|s| s.observed_generation) == ms.metadata.generation)
    })
    .await;
    for svc in ["orders", "ledger"] {
        api.delete(svc, &DeleteParams::default()).await.unwrap();
    }
    wait_for("both Microservices gone", Duration::from_secs(60), || async {
        anyhow::Ok(api.get_opt("orders").await?.is_none() && api.get_opt("ledger").await?.is_none())
    })
    .await;
    let kept = cnpg.get("orders-db").await.expect("Retain keeps the claim object");
    assert_eq!(
        kept.annotations().get("flotilla.dev/retained-from").map(String::as_str),
        Some(format!("{n}/orders").as_str()),
        "{:?}",
        kept.annotations()
    );
    wait_for("Delete removes the claim object", Duration::from_secs(60), || async {
        anyhow::Ok(xp.get_opt("ledger-db").await?.is_none())
    })
    .await;
    ns.cleanup().await;
}

fn class_lists(op: &Operator) -> u64 {
    operator::counter(&op.metrics(), "flotilla_api_requests_total{verb=\"list\",resource=\"databaseclasses\"}")
}

fn owner_free(meta: &kube::api::ObjectMeta) -> bool {
    meta.owner_references.as_ref().is_none_or(|o| o.is_empty())
}

#[tokio::test]
async fn retain_adopt_delete_and_operator_down() {
    let Some(operator::Setup { client, ns, mut op, api }) = setup("db-retain").await else { return };
    let n = ns.name().to_string();
    let class = format!("pg-{n}");
    let _classes = classes_cleanup(vec![class.clone()]);
    embedded_class(&client, &class, "postgres", "postgres:17").await;
    let secrets = ns.api::<Secret>();
    let pvcs = ns.api::<PersistentVolumeClaim>();

    // Retain (the default): the data outlives the Microservice, without owners or GitOps labels.
    apply_ms(&api, "keep", json!({"image": "registry.example/app:1", "database": {"class": class}})).await.unwrap();
    wait_cond(&api, "keep", "Ready", "True").await;
    assert!(api.get("keep").await.unwrap().finalizers().contains(&"flotilla.dev/database-retention".to_string()));
    let password = text(&secrets.get("keep-db").await.unwrap(), "password");
    let pvc_uid = pvcs.get("data-keep-db-0").await.unwrap().uid();
    // A GitOps tool's tracking marks on the data (as if it had adopted them).
    secrets
        .patch(
            "keep-db-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
            "labels": {"app.kubernetes.io/instance": "shop", "kustomize.toolkit.fluxcd.io/name": "shop"},
            "annotations": {"argocd.argoproj.io/tracking-id": "shop:/Secret:x/keep-db-credentials"}}})),
        )
        .await
        .unwrap();
    api.delete("keep", &DeleteParams::default()).await.unwrap();
    wait_for("the Microservice to go", Duration::from_secs(60), || async {
        anyhow::Ok(api.get_opt("keep").await?.is_none())
    })
    .await;
    for s in ["keep-db-credentials", "keep-db"] {
        let s = secrets.get(s).await.unwrap_or_else(|e| panic!("{s} was not retained: {e}"));
        assert!(owner_free(&s.metadata), "owner references removed");
        assert_eq!(s.annotations().get("flotilla.dev/retained-from"), Some(&format!("{n}/keep")));
        assert!(
            !s.labels().contains_key("app.kubernetes.io/instance")
                && !s.labels().contains_key("kustomize.toolkit.fluxcd.io/name")
        );
        assert!(!s.annotations().contains_key("argocd.argoproj.io/tracking-id"));
    }
    let pvc = pvcs.get("data-keep-db-0").await.expect("the volume claim is retained");
    assert_eq!(pvc.uid(), Some(pvc_uid.clone().unwrap()));
    assert!(owner_free(&pvc.metadata));
    assert_eq!(pvc.annotations().get("flotilla.dev/retained-from"), Some(&format!("{n}/keep")));

    // A Microservice of the same name adopts the same data and credentials.
    apply_ms(&api, "keep", json!({"image": "registry.example/app:1", "database": {"class": class}})).await.unwrap();
    let ms = wait_cond(&api, "keep", "Ready", "True").await;
    assert_eq!(ms.status.unwrap().database.unwrap().retained, Some(true));
    assert_eq!(text(&secrets.get("keep-db").await.unwrap(), "password"), password, "same credentials");
    assert_eq!(pvcs.get("data-keep-db-0").await.unwrap().uid(), pvc_uid, "same volume");
    assert!(
        !secrets.get("keep-db-credentials").await.unwrap().annotations().contains_key("flotilla.dev/retained-from")
    );

    // Delete while the operator is down: deletion waits for it, then the data is retained.
    op.kill();
    api.delete("keep", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = api.get("keep").await.expect("deletion waits for the operator");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    let lease = format!("lease-{n}");
    let mut op = Operator::start(&OperatorOptions { namespace: Some(&n), lease: &lease, tag: "db-retain-2" });
    op.wait_ready().await;
    op.wait_leading(&client).await;
    wait_for("the Microservice to go once the operator is back", Duration::from_secs(60), || async {
        anyhow::Ok(api.get_opt("keep").await?.is_none())
    })
    .await;
    assert_eq!(
        secrets.get("keep-db-credentials").await.unwrap().annotations().get("flotilla.dev/retained-from"),
        Some(&format!("{n}/keep"))
    );
    assert!(pvcs.get_opt("data-keep-db-0").await.unwrap().is_some());

    // Delete switched to Retain just before the delete: the claim, which the StatefulSet owned
    // under Delete, must still survive.
    apply_ms(
        &api,
        "flip",
        json!({"image": "registry.example/app:1", "database": {"class": class, "deletionPolicy": "Delete"}}),
    )
    .await
    .unwrap();
    wait_cond(&api, "flip", "Ready", "True").await;
    apply_ms(
        &api,
        "flip",
        json!({"image": "registry.example/app:1", "database": {"class": class, "deletionPolicy": "Retain"}}),
    )
    .await
    .unwrap();
    api.delete("flip", &DeleteParams::default()).await.unwrap();
    wait_for("flip to go", Duration::from_secs(60), || async { anyhow::Ok(api.get_opt("flip").await?.is_none()) })
        .await;
    // Once the StatefulSet is gone, the garbage collector has no owner left to delete the claim
    // for: a claim still owned by it now would be deleted, and fails the check below.
    let statefulsets = ns.api::<StatefulSet>();
    wait_for("the StatefulSet flip-db to go", Duration::from_secs(60), || async {
        anyhow::Ok(statefulsets.get_opt("flip-db").await?.is_none())
    })
    .await;
    let pvc = pvcs.get_opt("data-flip-db-0").await.unwrap().expect("the claim survives");
    assert!(pvc.metadata.deletion_timestamp.is_none() && owner_free(&pvc.metadata), "{:?}", pvc.metadata);

    // Removing the database section stops the database and keeps its data; adding it back
    // adopts the same data.
    apply_ms(&api, "detach", json!({"image": "registry.example/app:1", "database": {"class": class}})).await.unwrap();
    wait_cond(&api, "detach", "Ready", "True").await;
    let detach_password = text(&secrets.get("detach-db").await.unwrap(), "password");
    apply_ms(&api, "detach", json!({"image": "registry.example/app:1"})).await.unwrap();
    let deployments = ns.api::<Deployment>();
    wait_for("the detached database to stop, its data kept", Duration::from_secs(60), || async {
        let ms = api.get("detach").await?;
        let d = deployments.get("detach").await?;
        anyhow::Ok(
            env_secret_ref(&d, "DATABASE_URL").is_none()
                && statefulsets.get_opt("detach-db").await?.is_none()
                && ns.api::<ServiceAccount>().get_opt("detach-db").await?.is_none()
                && !ms.finalizers().iter().any(|f| f == "flotilla.dev/database-retention")
                && pvcs.get_opt("data-detach-db-0").await?.is_some_and(|p| p.metadata.deletion_timestamp.is_none())
                && secrets
                    .get_opt("detach-db-credentials")
                    .await?
                    .is_some_and(|s| s.annotations().contains_key("flotilla.dev/retained-from")),
        )
    })
    .await;
    apply_ms(&api, "detach", json!({"image": "registry.example/app:1", "database": {"class": class}})).await.unwrap();
    wait_cond(&api, "detach", "Ready", "True").await;
    assert_eq!(text(&secrets.get("detach-db").await.unwrap(), "password"), detach_password, "same credentials");

    // Delete: the data goes with the Microservice.
    apply_ms(
        &api,
        "drop",
        json!({"image": "registry.example/app:1", "database": {"class": class, "deletionPolicy": "Delete"}}),
    )
    .await
    .unwrap();
    wait_cond(&api, "drop", "Ready", "True").await;
    api.delete("drop", &DeleteParams::default()).await.unwrap();
    wait_for("the data of a Delete database to go", Duration::from_secs(60), || async {
        anyhow::Ok(
            api.get_opt("drop").await?.is_none()
                && secrets.get_opt("drop-db").await?.is_none()
                && secrets.get_opt("drop-db-credentials").await?.is_none()
                && pvcs.get_opt("data-drop-db-0").await?.is_none_or(|p| p.metadata.deletion_timestamp.is_some()),
        )
    })
    .await;
    drop(op);
    ns.cleanup().await;
}

#[tokio::test]
async fn class_is_immutable_storage_grows_and_class_problems_are_reported() {
    let Some(operator::Setup { client, ns, op, api }) = setup("db-change").await else { return };
    let n = ns.name().to_string();
    let class = format!("pg-{n}");
    let _classes = classes_cleanup(vec![class.clone(), format!("nowhere-{n}"), format!("missing-{n}")]);
    embedded_class(&client, &class, "postgres", "postgres:17").await;
    apply_ms(&api, "grow", json!({"image": "registry.example/app:1", "database": {"class": class, "storage": "1Gi"}}))
        .await
        .unwrap();
    wait_cond(&api, "grow", "Ready", "True").await;

    let err = apply_ms(
        &api,
        "grow",
        json!({"image": "registry.example/app:1", "database": {"class": "other", "storage": "1Gi"}}),
    )
    .await
    .expect_err("class change refused");
    let err = err.to_string();
    assert!(err.contains("spec.database.class") && err.contains(flotilla::api::rules::CLASS_IMMUTABLE), "{err}");
    let err = apply_ms(
        &api,
        "grow",
        json!({"image": "registry.example/app:1", "database": {"class": class, "storage": "500Mi"}}),
    )
    .await
    .expect_err("shrink refused");
    assert!(err.to_string().contains(flotilla::api::rules::STORAGE_NO_SHRINK), "{err}");

    apply_ms(&api, "grow", json!({"image": "registry.example/app:1", "database": {"class": class, "storage": "2Gi"}}))
        .await
        .unwrap();
    let pvcs = ns.api::<PersistentVolumeClaim>();
    wait_for("the volume claim to be expanded to 2Gi", Duration::from_secs(30), || async {
        let p = pvcs.get("data-grow-db-0").await?;
        anyhow::Ok(p.spec.and_then(|s| s.resources).and_then(|r| r.requests).is_some_and(|r| r["storage"].0 == "2Gi"))
    })
    .await;

    // A volume claim that cannot bind: the database is Pending and the status says why.
    apply_yaml(
        &client,
        &format!("apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: nowhere-{n}}}\nspec: {{engine: postgres, provisioner: embedded, embedded: {{image: postgres:17, storageClassName: nowhere}}}}\n"),
        None,
    )
    .await;
    apply_ms(&api, "stuck", json!({"image": "registry.example/app:1", "database": {"class": format!("nowhere-{n}")}}))
        .await
        .unwrap();
    wait_for("a Pending volume claim to be reported", Duration::from_secs(30), || async {
        let ms = api.get("stuck").await?;
        let st = ms.status.unwrap_or_default();
        let db_cond = st.conditions.iter().find(|c| c.type_ == "DatabaseReady").cloned();
        let ready = st.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
        anyhow::Ok(
            st.database.and_then(|d| d.phase).as_deref() == Some("Pending")
                && db_cond.is_some_and(|c| c.reason == "VolumePending" && c.message.contains("data-stuck-db-0"))
                && ready.as_deref() == Some("False"),
        )
    })
    .await;
    delete_class(&client, &format!("nowhere-{n}")).await;

    // A class that does not exist, and two default classes.
    let (lists_before, reconciles_before) = (class_lists(&op), op.reconciles_done());
    apply_ms(&api, "lost", json!({"image": "registry.example/app:1", "database": {"class": format!("missing-{n}")}}))
        .await
        .unwrap();
    let ms = wait_reason(&api, "lost", "DatabaseReady", "False", Some("ClassNotFound")).await;
    assert_eq!(ms.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Stalled").unwrap().status, "True");
    // The class created late is picked up without touching the service: class changes are watched.
    let created = std::time::Instant::now();
    embedded_class(&client, &format!("missing-{n}"), "postgres", "postgres:17").await;
    wait_cond(&api, "lost", "DatabaseReady", "True").await;
    println!("class created -> its service's database Ready: {:?}", created.elapsed());
    // Classes come from the watched cache: the reconciles since the class appeared listed none
    // (one relist of the cache's watch is allowed for).
    let (lists, reconciles) = (class_lists(&op), op.reconciles_done());
    let lists = lists - lists_before;
    let reconciles = reconciles - reconciles_before;
    assert!(reconciles >= 3 && lists <= 1, "DatabaseClasses listed {lists} times in {reconciles} reconciles");
    let _defaults = classes_cleanup(vec![format!("default-a-{n}"), format!("default-b-{n}")]);
    for d in ["a", "b"] {
        apply_yaml(
            &client,
            &format!("apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: default-{d}-{n}, annotations: {{flotilla.dev/is-default-class: 'true'}}}}\nspec: {{engine: postgres, provisioner: embedded, embedded: {{image: postgres:17}}}}\n"),
            None,
        )
        .await;
    }
    apply_ms(&api, "twice", json!({"image": "registry.example/app:1", "database": {}})).await.unwrap();
    wait_reason(&api, "twice", "DatabaseReady", "False", Some("MultipleDefaultClasses")).await;
    ns.cleanup().await;
}

#[tokio::test]
async fn clashing_names_fail_closed_and_every_pod_passes_the_restricted_profile() {
    let Some(operator::Setup { client, ns, op: _op, api }) = setup("db-clash").await else { return };
    let n = ns.name().to_string();
    // Every pod Flotilla makes, the service's and the embedded database's, passes the
    // "restricted" Pod Security Standard: the namespace enforces it.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let enforce = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    namespaces.patch(&n, &PatchParams::default(), &Patch::Merge(&enforce)).await.unwrap();
    let class = format!("pg-{n}");
    let _classes = classes_cleanup(vec![class.clone()]);
    embedded_class(&client, &class, "postgres", "postgres:17").await;
    let (deployments, statefulsets) = (ns.api::<Deployment>(), ns.api::<StatefulSet>());
    let policies = ns.api::<NetworkPolicy>();

    // `worker` (with a database) first: the Microservice `worker-db` is refused and writes nothing.
    apply_ms(&api, "worker", json!({"image": "registry.example/worker:1", "database": {"class": class}}))
        .await
        .unwrap();
    wait_cond(&api, "worker", "Ready", "True").await;
    let pods = ns.api::<Pod>().list(&ListParams::default()).await.unwrap();
    assert!(pods.items.len() >= 2, "the service's and the database's pods run under the restricted profile");
    apply_ms(&api, "worker-db", json!({"image": "registry.example/worker-db:1"})).await.unwrap();
    let ms = wait_reason(&api, "worker-db", "Stalled", "True", Some("InvalidSpec")).await;
    let stalled = ms.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(stalled.message.contains("metadata.name") && stalled.message.contains("\"worker\""), "{}", stalled.message);
    let np = policies.get("worker-db").await.unwrap();
    assert_eq!(np.owner_references()[0].name, "worker", "the database keeps its NetworkPolicy");
    assert!(deployments.get_opt("worker-db").await.unwrap().is_none(), "the refused service has no Deployment");
    wait_cond(&api, "worker", "Ready", "True").await;

    // `plain-db` first: the database of `plain` is refused, and with it all of `plain`: no
    // StatefulSet runs without its NetworkPolicy, no Deployment without its database.
    apply_ms(&api, "plain-db", json!({"image": "registry.example/plain-db:1"})).await.unwrap();
    wait_cond(&api, "plain-db", "Ready", "True").await;
    apply_ms(&api, "plain", json!({"image": "registry.example/plain:1", "database": {"class": class}})).await.unwrap();
    let ms = wait_reason(&api, "plain", "Stalled", "True", Some("InvalidSpec")).await;
    let stalled = ms.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Stalled").unwrap();
    assert!(
        stalled.message.contains("spec.database") && stalled.message.contains("\"plain-db\""),
        "{}",
        stalled.message
    );
    assert!(statefulsets.get_opt("plain-db").await.unwrap().is_none(), "no database without its NetworkPolicy");
    assert!(deployments.get_opt("plain").await.unwrap().is_none(), "no half-made service");

    // The first one goes: the other is reconciled without being touched.
    api.delete("plain-db", &DeleteParams::default()).await.unwrap();
    let ms = wait_cond(&api, "plain", "Ready", "True").await;
    assert!(ms.status.unwrap().conditions.iter().any(|c| c.type_ == "DatabaseReady" && c.status == "True"));
    assert_eq!(policies.get("plain-db").await.unwrap().owner_references()[0].name, "plain");

    // A pod label Flotilla owns is refused by the API server itself, naming the field.
    let err = apply_ms(&api, "impostor", json!({"image": "x", "pod": {"labels": {"flotilla.dev/database": "worker"}}}))
        .await
        .expect_err("a reserved label is refused at apply time");
    let err = err.to_string();
    assert!(err.contains("spec.pod.labels") && err.contains(&flotilla::api::rules::reserved_labels()), "{err}");
    // So is an external network written with bits after its prefix.
    let err = apply_ms(&api, "leaky", json!({"image": "x", "dependencies": [{"external": {"cidr": "10.0.0.1/24"}}]}))
        .await
        .expect_err("a CIDR with host bits is refused at apply time");
    let err = err.to_string();
    assert!(err.contains("external.cidr: Invalid value") && err.contains(flotilla::api::rules::CIDR_NETWORK), "{err}");
    apply_ms(&api, "leaky", json!({"image": "x", "dependencies": [{"external": {"cidr": "10.0.0.0/24"}}]}))
        .await
        .expect("the network itself is accepted");
    ns.cleanup().await;
}

/// A claim class whose kind no CRD serves yet: the service waits (`ClaimKindNotServed`) with
/// no claim made; the CRD installed while the operator runs, the claim is made without a restart
/// (the operator watches the CRDs); and the claim's own changes reach the service through its
/// watch, not a poll: its Ready condition moves the service on to waiting for the connection
/// Secret.
#[tokio::test]
async fn a_claim_kind_installed_later_is_used_without_a_restart() {
    let Some(operator::Setup { client, ns, op: _op, api }) = setup("db-late").await else { return };
    let n = ns.name().to_string();
    let group = format!("{n}.example.org");
    let crd_name = format!("databases.{group}");
    let class = format!("late-{n}");
    let _classes = classes_cleanup(vec![class.clone()]);
    let (crd_cleanup, rbac_cleanup) = (crd_name.clone(), format!("flotilla-test-late-{n}"));
    let _cleanup = support::Cleanup::new(move |client| async move {
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        let _ =
            Api::<CustomResourceDefinition>::all(client.clone()).delete(&crd_cleanup, &DeleteParams::default()).await;
        let _ = Api::<ClusterRole>::all(client.clone()).delete(&rbac_cleanup, &DeleteParams::default()).await;
        let _ = Api::<ClusterRoleBinding>::all(client).delete(&rbac_cleanup, &DeleteParams::default()).await;
    });
    apply_yaml(
        &client,
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {class}}}\n\
             spec:\n  engine: postgres\n  provisioner: claim\n  claim:\n    apiVersion: {group}/v1\n    kind: Database\n    \
             spec: {{size: \"${{storage}}\"}}\n    connectionSecret: {{name: \"${{name}}-conn\"}}\n    readyCondition: Ready\n"
        ),
        None,
    )
    .await;
    apply_ms(&api, "orders", json!({"image": "registry.example/app:1", "database": {"class": class}})).await.unwrap();
    let ms = wait_reason(&api, "orders", "DatabaseReady", "False", Some("ClaimKindNotServed")).await;
    let message = ms.status.unwrap().conditions.into_iter().find(|c| c.type_ == "DatabaseReady").unwrap().message;
    assert!(message.contains(&format!("{group}/v1 Database is not served")), "{message}");

    // The database operator is installed: its CRD, and the operator's rights on its kind.
    apply_yaml(
        &client,
        &format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {{name: {crd_name}}}\n\
             spec:\n  group: {group}\n  scope: Namespaced\n  names: {{kind: Database, plural: databases, singular: database, listKind: DatabaseList}}\n  \
             versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources: {{status: {{}}}}\n    \
             schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: flotilla-test-late-{n}}}\n\
             rules: [{{apiGroups: [{group}], resources: [databases], verbs: [get, list, watch, create, patch, update, delete]}}]\n\
             ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: flotilla-test-late-{n}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flotilla-test-late-{n}}}\n\
             subjects: [{{kind: ServiceAccount, name: flotilla, namespace: flotilla-system}}]\n"
        ),
        None,
    )
    .await;
    operator::crds_established(&client, &[crd_name.as_str()]).await;
    let installed = std::time::Instant::now();
    wait_reason(&api, "orders", "DatabaseReady", "False", Some("ClaimNotReady")).await;
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(&group, "v1", "Database"), "databases");
    let claims: Api<DynamicObject> = Api::namespaced_with(client.clone(), &n, &ar);
    let claim = claims.get("orders-db").await.expect("the claim is made once its kind is served");
    assert_eq!(claim.data["spec"]["size"], "1Gi", "the default storage substituted");
    eprintln!("claim kind installed -> claim made: {:.1}s", installed.elapsed().as_secs_f64());

    // The claim reports Ready: its watch brings the service on (no poll looks at a claim that is
    // not ready), to the connection Secret it now waits for.
    let now = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let ready = json!({"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": now}
    ]}});
    claims.patch_status("orders-db", &PatchParams::default(), &Patch::Merge(&ready)).await.unwrap();
    let reported = std::time::Instant::now();
    wait_reason(&api, "orders", "DatabaseReady", "False", Some("ConnectionSecretMissing")).await;
    eprintln!("claim Ready -> service moved on: {:.1}s", reported.elapsed().as_secs_f64());
    ns.cleanup().await;
}
