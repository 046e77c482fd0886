//! The operator as it runs in a pod: no kubeconfig, the API server's address in
//! `KUBERNETES_SERVICE_HOST`/`_PORT`, and a ServiceAccount token the real API server issued at
//! the standard path. It reconciles with exactly the shipped RBAC (the ClusterRole of
//! `config/rbac/role.yaml`), and, installed for a list of namespaces, with the same rules bound
//! by a RoleBinding in each of them and nothing more: services there become Ready, a service
//! elsewhere is never touched, and no request is refused. Needs `make cluster-up`, and root (the
//! token is mounted in a mount namespace of the operator's own).

mod operator;
mod support;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Client;
use kube::api::{Api, DeleteParams};
use operator::{Operator, OperatorOptions, apply_ms, apply_yaml, install, pod_account_files};
use serde_json::json;
use support::{TestNamespace, client, wait_for};

const WAIT: Duration = Duration::from_secs(90);

async fn wait_ready(api: &Api<Microservice>, name: &str) {
    wait_for(&format!("{name} Ready"), WAIT, || async {
        let ms = api.get(name).await?;
        let st = ms.status.clone().unwrap_or_default();
        let ready = st.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
        if ready && st.observed_generation == ms.metadata.generation {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("conditions {:?}", st.conditions))
        }
    })
    .await;
}

/// An embedded Postgres class named `name`, deleted when the guard drops.
async fn database_class(client: &Client, name: &str) -> support::Cleanup {
    apply_yaml(
        client,
        &format!(
            "apiVersion: flotilla.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {name}}}\n\
             spec: {{engine: postgres, provisioner: embedded, embedded: {{image: 'postgres:17', storageClassName: standard}}}}\n"
        ),
        None,
    )
    .await;
    let name = name.to_string();
    support::Cleanup::new(move |client| async move {
        let api: Api<flotilla::api::DatabaseClass> = Api::all(client);
        let _ = api.delete(&name, &DeleteParams::default()).await;
    })
}

fn shipped(file: &str) -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/rbac").join(file)).unwrap()
}

fn assert_never_refused(op: &Operator) {
    let logs = op.logs();
    assert!(!logs.contains("forbidden") && !logs.contains("Forbidden"), "a request was refused:\n{}", op.log_tail());
}

/// The shipped ServiceAccount `flotilla-system/flotilla` and its ClusterRole, in-cluster.
#[tokio::test]
async fn in_a_pod_with_the_shipped_rbac_it_reconciles() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let ns = TestNamespace::new(&client, "incluster").await;
    let n = ns.name().to_string();
    let _class = database_class(&client, &format!("pg-{n}")).await;
    let account = pod_account_files(&client, "flotilla-system", "flotilla").await;
    let lease = format!("lease-{n}");
    let opts = OperatorOptions { namespace: Some(&n), lease: &lease, tag: "incluster" };
    let mut op = Operator::start_in_pod(&opts, &[], &[], &account);
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let api: Api<Microservice> = ns.api();
    apply_ms(
        &api,
        "web",
        json!({"image": "registry.example/web:1", "replicas": 2,
        "database": {"class": format!("pg-{n}")}, "expose": {"ingress": {"host": format!("{n}.example.com")}}}),
    )
    .await
    .unwrap();
    wait_ready(&api, "web").await;
    assert!(ns.api::<StatefulSet>().get_opt("web-db").await.unwrap().is_some());
    assert_never_refused(&op);
    op.kill();
    ns.cleanup().await;
}

/// Installed for two namespaces: the namespaced rules of the shipped ClusterRole bound in each
/// by a RoleBinding, DatabaseClasses readable cluster-wide, the Lease in the operator's own
/// namespace; `FLOTILLA_NAMESPACE=a,b`, as a Deployment would set it.
#[tokio::test]
async fn installed_for_a_list_of_namespaces_it_needs_rights_in_those_alone() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let home = TestNamespace::new(&client, "incluster-op").await;
    let a = TestNamespace::new(&client, "incluster-a").await;
    let b = TestNamespace::new(&client, "incluster-b").await;
    let elsewhere = TestNamespace::new(&client, "incluster-c").await;
    let (h, na, nb) = (home.name().to_string(), a.name().to_string(), b.name().to_string());
    let _class = database_class(&client, &format!("pg-{h}")).await;

    // The shipped ClusterRole's rules under a name of this install's, without DatabaseClasses,
    // which are cluster-scoped and get a ClusterRole of their own.
    let role = shipped("role.yaml");
    let rules = role.split("---").next().unwrap().replace("name: flotilla\n", &format!("name: flotilla-ns-{h}\n"));
    let rules = rules.replace("resources: [microservices, databaseclasses]", "resources: [microservices]");
    assert!(rules.contains("resources: [microservices]\n"), "the shipped rules changed shape: {role}");
    let mut yaml = rules;
    for ns in [&na, &nb] {
        yaml += &format!(
            "\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: flotilla, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flotilla-ns-{h}}}\n\
             subjects: [{{kind: ServiceAccount, name: flotilla, namespace: {h}}}]\n"
        );
    }
    yaml += &format!(
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: flotilla-classes-{h}}}\n\
         rules: [{{apiGroups: [flotilla.dev], resources: [databaseclasses], verbs: [get, list, watch]}}]\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: flotilla-classes-{h}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: flotilla-classes-{h}}}\n\
         subjects: [{{kind: ServiceAccount, name: flotilla, namespace: {h}}}]\n---\n"
    );
    yaml += &shipped("leader_election.yaml").replace("namespace: flotilla-system", &format!("namespace: {h}"));
    yaml += &format!("\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: flotilla, namespace: {h}}}\n");
    apply_yaml(&client, &yaml, None).await;
    let cluster_scoped = h.clone();
    let _rbac = support::Cleanup::new(move |client| async move {
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        let roles: Api<ClusterRole> = Api::all(client.clone());
        let bindings: Api<ClusterRoleBinding> = Api::all(client);
        let _ = roles.delete(&format!("flotilla-ns-{cluster_scoped}"), &DeleteParams::default()).await;
        let _ = roles.delete(&format!("flotilla-classes-{cluster_scoped}"), &DeleteParams::default()).await;
        let _ = bindings.delete(&format!("flotilla-classes-{cluster_scoped}"), &DeleteParams::default()).await;
    });

    let account = pod_account_files(&client, &h, "flotilla").await;
    let lease = format!("lease-{h}");
    let opts = OperatorOptions { namespace: None, lease: &lease, tag: "incluster-list" };
    let watched = format!("{na},{nb}");
    let mut op = Operator::start_in_pod(
        &opts,
        &[],
        &[("FLOTILLA_NAMESPACE", watched.as_str()), ("POD_NAMESPACE", h.as_str())],
        &account,
    );
    op.wait_ready().await;
    op.wait_leading(&client).await;

    let (in_a, in_b, in_c): (Api<Microservice>, Api<Microservice>, Api<Microservice>) =
        (a.api(), b.api(), elsewhere.api());
    apply_ms(&in_c, "ignored", json!({"image": "registry.example/ignored:1"})).await.unwrap();
    apply_ms(
        &in_a,
        "web",
        json!({"image": "registry.example/web:1", "replicas": 2,
        "expose": {"ingress": {"host": format!("{na}.example.com")}}}),
    )
    .await
    .unwrap();
    apply_ms(&in_b, "orders", json!({"image": "registry.example/orders:1", "database": {"class": format!("pg-{h}")}}))
        .await
        .unwrap();
    wait_ready(&in_a, "web").await;
    wait_ready(&in_b, "orders").await;
    // Both were reconciled after the one outside was applied: it is not among what was watched.
    let ignored = in_c.get("ignored").await.unwrap();
    let touched = ignored.status.as_ref().is_some_and(|st| !st.conditions.is_empty())
        || ignored.metadata.managed_fields.iter().flatten().any(|m| m.manager.as_deref() == Some("flotilla"));
    assert!(!touched, "a namespace not listed was reconciled: {:?}", ignored.metadata);
    assert_eq!(op.services_reconciled(), 2, "only the listed namespaces' services");
    assert_never_refused(&op);
    op.kill();
    for ns in [a, b, elsewhere, home] {
        ns.cleanup().await;
    }
}
