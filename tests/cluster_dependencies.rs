//! One dependency list drives both sides: the caller gets a URL and an egress rule, the callee's
//! NetworkPolicy admits the caller, and changes on either side follow. Across namespaces the
//! callee admits a caller only once its own `expose.allowFrom` consents (tests/cluster_tenants.rs
//! tries it as an attacker). The operator here watches all namespaces. Needs `make cluster-up`.

mod operator;
mod support;

use std::time::{Duration, Instant};

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams};
use operator::{Operator, OperatorOptions, apply_ms, install};
use serde_json::json;
use support::{TestNamespace, client, wait_for};

/// The (caller namespace, caller name, port) peers the NetworkPolicy admits.
fn admitted(np: &NetworkPolicy) -> Vec<(String, String, i32)> {
    let mut out = Vec::new();
    for rule in np.spec.as_ref().and_then(|s| s.ingress.clone()).unwrap_or_default() {
        for peer in rule.from.unwrap_or_default() {
            let ns = peer
                .namespace_selector
                .and_then(|s| s.match_labels)
                .and_then(|m| m.get("kubernetes.io/metadata.name").cloned());
            // A caller by name (matchLabels), or the callers an allowFrom entry names (In).
            let selector = peer.pod_selector.unwrap_or_default();
            let mut names: Vec<String> =
                selector.match_labels.and_then(|m| m.get("flotilla.dev/microservice").cloned()).into_iter().collect();
            for e in selector.match_expressions.unwrap_or_default() {
                if e.key == "flotilla.dev/microservice" && e.operator == "In" {
                    names.extend(e.values.unwrap_or_default());
                }
            }
            for (ns, name) in names.iter().filter_map(|n| Some((ns.clone()?, n))) {
                for p in rule.ports.clone().unwrap_or_default() {
                    if let Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)) = p.port {
                        out.push((ns.clone(), name.clone(), port));
                    }
                }
            }
        }
    }
    out.sort();
    out
}

fn env_value(d: &Deployment, name: &str) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0].env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
}

async fn wait_admitted(np: &Api<NetworkPolicy>, want: Vec<(String, String, i32)>, what: &str) -> Duration {
    wait_for(what, Duration::from_secs(30), || async {
        let got = admitted(&np.get("payments").await?);
        if got == want { anyhow::Ok(true) } else { Err(anyhow!("admitted {got:?}")) }
    })
    .await
}

#[tokio::test]
async fn one_dependency_list_drives_both_sides() {
    let Some(client) = client().await else { return };
    install(&client).await;
    let a = TestNamespace::new(&client, "deps-a").await;
    let b = TestNamespace::new(&client, "deps-b").await;
    let lease = format!("lease-{}", a.name());
    let mut op = Operator::start(&OperatorOptions { namespace: None, lease: &lease, tag: "deps" });
    op.wait_ready().await;
    op.wait_leading(&client).await;
    let (ams, bms) = (a.api::<Microservice>(), b.api::<Microservice>());
    let (a_np, a_dep) = (a.api::<NetworkPolicy>(), a.api::<Deployment>());
    let an = a.name().to_string();
    let bn = b.name().to_string();

    // payments consents to web of namespace b.
    let payments = |port: i32| {
        json!({"image": "registry.example/payments:1", "ports": [{"name": "http", "port": port}],
               "expose": {"allowFrom": [{"namespace": bn, "services": ["web"]}]}})
    };
    let orders = |deps: bool| {
        if deps {
            json!({"image": "registry.example/orders:1", "dependencies": [{"service": "payments"}]})
        } else {
            json!({"image": "registry.example/orders:1"})
        }
    };
    apply_ms(
        &ams,
        "payments",
        json!({"image": "registry.example/payments:1", "ports": [{"name": "http", "port": 8443}]}),
    )
    .await
    .unwrap();
    apply_ms(&ams, "orders", orders(true)).await.unwrap();
    apply_ms(
        &bms,
        "web",
        json!({"image": "registry.example/web:1", "dependencies": [{"service": "payments", "namespace": an}]}),
    )
    .await
    .unwrap();

    // web's dependency alone opens nothing in namespace a: web is told why.
    wait_admitted(&a_np, vec![(an.clone(), "orders".into(), 8443)], "payments to admit orders alone").await;
    wait_for("web: DependenciesReady=False, NotAdmitted", Duration::from_secs(30), || async {
        let ms = bms.get("web").await?;
        let c = ms.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "DependenciesReady");
        anyhow::Ok(c.is_some_and(|c| c.reason == "NotAdmitted" && c.message.contains(&format!("{an}/payments"))))
    })
    .await;
    // payments consents: web is admitted, and says so.
    apply_ms(&ams, "payments", payments(8443)).await.unwrap();
    wait_admitted(
        &a_np,
        vec![(an.clone(), "orders".into(), 8443), (bn.clone(), "web".into(), 8443)],
        "payments to admit orders and web",
    )
    .await;
    wait_for("web: DependenciesReady=True", Duration::from_secs(30), || async {
        let ms = bms.get("web").await?;
        let c = ms.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "DependenciesReady");
        anyhow::Ok(c.is_some_and(|c| c.status == "True"))
    })
    .await;
    // Each object is waited for on its own: the callee's policy says nothing about whether the
    // callers' and the callee's own Deployments exist yet.
    let payments_url = format!("http://payments.{an}.svc.cluster.local:8443");
    let web_dep = b.api::<Deployment>();
    for (api, name) in [(&a_dep, "orders"), (&web_dep, "web")] {
        wait_for(&format!("Deployment {name} with PAYMENTS_URL"), Duration::from_secs(60), || async {
            let d = api.get_opt(name).await?;
            Ok::<_, kube::Error>(d.is_some_and(|d| env_value(&d, "PAYMENTS_URL").as_deref() == Some(&payments_url)))
        })
        .await;
    }
    wait_for("orders' egress rule to payments", Duration::from_secs(60), || async {
        let np = a_np.get_opt("orders").await?;
        let egress = np.and_then(|p| p.spec).and_then(|s| s.egress).unwrap_or_default();
        Ok::<_, kube::Error>(
            egress
                .iter()
                .any(|r| serde_json::to_string(r).unwrap().contains("\"flotilla.dev/microservice\":\"payments\"")),
        )
    })
    .await;
    wait_for("Deployment payments", Duration::from_secs(60), || async {
        Ok::<_, kube::Error>(a_dep.get_opt("payments").await?.is_some())
    })
    .await;

    // Removing the dependency updates the callee's policy and touches nothing else of it.
    let payments_generation = a_dep.get("payments").await.unwrap().metadata.generation;
    let t = Instant::now();
    apply_ms(&ams, "orders", orders(false)).await.unwrap();
    wait_admitted(&a_np, vec![(bn.clone(), "web".into(), 8443)], "payments to stop admitting orders").await;
    println!("dependency removed -> callee policy updated: {:.2}s", t.elapsed().as_secs_f64());
    assert!(
        t.elapsed() < support::ABOUT_A_SECOND,
        "README: a caller's change reaches the callee in about a second; took {:?}",
        t.elapsed()
    );
    assert_eq!(
        a_dep.get("payments").await.unwrap().metadata.generation,
        payments_generation,
        "the callee's Deployment is untouched"
    );

    // Adding it back admits orders again.
    apply_ms(&ams, "orders", orders(true)).await.unwrap();
    wait_admitted(
        &a_np,
        vec![(an.clone(), "orders".into(), 8443), (bn.clone(), "web".into(), 8443)],
        "orders admitted again",
    )
    .await;

    // The callee moves to another port: callers' URLs and both policies follow.
    apply_ms(&ams, "payments", payments(9443)).await.unwrap();
    wait_admitted(&a_np, vec![(an.clone(), "orders".into(), 9443), (bn.clone(), "web".into(), 9443)], "the new port")
        .await;
    wait_for("orders' URL to follow the callee's port", Duration::from_secs(30), || async {
        anyhow::Ok(
            env_value(&a_dep.get("orders").await?, "PAYMENTS_URL")
                == Some(format!("http://payments.{an}.svc.cluster.local:9443")),
        )
    })
    .await;

    // Deleting a caller removes its rule from the callee (web's is payments' own consent, kept
    // until payments drops it).
    ams.delete("orders", &DeleteParams::default()).await.unwrap();
    wait_admitted(&a_np, vec![(bn.clone(), "web".into(), 9443)], "payments to stop admitting the deleted orders").await;
    bms.delete("web", &DeleteParams::default()).await.unwrap();

    // A dependency on a service that does not exist is reported, and resolved when it appears.
    apply_ms(
        &ams,
        "orders",
        json!({"image": "registry.example/orders:1", "dependencies": [{"service": "payments"}, {"service": "ledger"}]}),
    )
    .await
    .unwrap();
    wait_for("DependenciesReady=False naming ledger", Duration::from_secs(30), || async {
        let ms = ams.get("orders").await?;
        let c = ms.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "DependenciesReady");
        anyhow::Ok(c.is_some_and(|c| c.status == "False" && c.message.contains(&format!("{an}/ledger"))))
    })
    .await;
    apply_ms(&ams, "ledger", json!({"image": "registry.example/ledger:1"})).await.unwrap();
    wait_for("DependenciesReady=True once ledger exists", Duration::from_secs(30), || async {
        let ms = ams.get("orders").await?;
        let c = ms.status.unwrap_or_default().conditions.into_iter().find(|c| c.type_ == "DependenciesReady");
        anyhow::Ok(c.is_some_and(|c| c.status == "True"))
    })
    .await;
    op.kill();
    a.cleanup().await;
    b.cleanup().await;
}
