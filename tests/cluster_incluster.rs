//! The operator as it runs in a pod: no kubeconfig, the API server's address in
//! `KUBERNETES_SERVICE_HOST`/`_PORT`, and a ServiceAccount token the real API server issued at
//! the standard path. It reconciles with exactly the shipped RBAC (the ClusterRole of
//! `config/rbac/role.yaml`) and no request is refused. (A release of the Helm chart for a list of
//! namespaces is run the same way in `tests/cluster_install.rs`.) Needs `make cluster-up`, and
//! root (the token is mounted in a mount namespace of the operator's own).

mod operator;
mod support;

use std::time::Duration;

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::StatefulSet;

use kube::api::Api;
use operator::{Operator, OperatorOptions, apply_ms, install, pod_account_files};
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
    let _class = operator::embedded_postgres_class(&client, &format!("pg-{n}")).await;
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
