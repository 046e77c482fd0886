//! Proof that the local cluster really autoscales (no operator involved):
//! a Deployment whose pods' simulated CPU usage (kwok annotation
//! `kwok.x-k8s.io/usage-cpu`, read by kwok's ClusterResourceUsage and served
//! as kubelet resource metrics to metrics-server) goes up and down, and the
//! kube-controller-manager's HPA controller scaling it out and back in.
//!
//! Needs `make cluster-up`. Timings are printed (`-- --nocapture`).

mod support;

use std::time::Duration;

use anyhow::anyhow;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestNamespace, client, wait_for};

const NAME: &str = "web";
const USAGE_ANNOTATION: &str = "kwok.x-k8s.io/usage-cpu";

fn deployment(usage_cpu: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": NAME },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": NAME } },
            "template": {
                "metadata": {
                    "labels": { "app": NAME },
                    "annotations": { USAGE_ANNOTATION: usage_cpu }
                },
                "spec": {
                    "containers": [{
                        "name": "app",
                        "image": "registry.invalid/fake:1",
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "64Mi" },
                            "limits": { "cpu": "1", "memory": "128Mi" }
                        }
                    }]
                }
            }
        }
    }))
    .expect("deployment manifest")
}

fn hpa() -> HorizontalPodAutoscaler {
    serde_json::from_value(json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": { "name": NAME },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": NAME },
            "minReplicas": 1,
            "maxReplicas": 6,
            "metrics": [{
                "type": "Resource",
                "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 50 } }
            }],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{ "type": "Percent", "value": 400, "periodSeconds": 5 }]
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 5,
                    "policies": [{ "type": "Percent", "value": 100, "periodSeconds": 5 }]
                }
            }
        }
    }))
    .expect("hpa manifest")
}

/// The CPU utilisation (% of requests) the HPA controller last computed.
fn cpu_utilization(h: &HorizontalPodAutoscaler) -> Option<i32> {
    h.status
        .as_ref()
        .and_then(|s| s.current_metrics.as_ref())
        .and_then(|m| m.first())
        .and_then(|m| m.resource.as_ref())
        .and_then(|r| r.current.average_utilization)
}

fn hpa_state(h: &HorizontalPodAutoscaler) -> String {
    let st = h.status.as_ref();
    let util = cpu_utilization(h);
    let conds: Vec<String> = st
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter().map(|c| format!("{}={}({})", c.type_, c.status, c.reason.clone().unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    format!(
        "hpa current={:?} desired={:?} cpu utilization={:?}% conditions=[{}]",
        st.and_then(|s| s.current_replicas),
        st.map(|s| s.desired_replicas),
        util,
        conds.join(", ")
    )
}

async fn set_usage(api: &kube::Api<Deployment>, usage_cpu: &str) {
    let patch = json!({
        "spec": { "template": { "metadata": { "annotations": { USAGE_ANNOTATION: usage_cpu } } } }
    });
    api.patch(NAME, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch usage annotation");
}

#[tokio::test]
async fn hpa_scales_deployment_out_and_in_on_simulated_cpu_usage() {
    let Some(client) = client().await else { return };
    let ns = TestNamespace::new(&client, "cluster-hpa").await;
    let deploys = ns.api::<Deployment>();
    let hpas = ns.api::<HorizontalPodAutoscaler>();
    let pods = ns.api::<Pod>();

    // 1. One pod at 10% of its CPU request: created -> scheduled -> Running (kwok).
    deploys.create(&PostParams::default(), &deployment("10m")).await.expect("create deployment");
    let lp = ListParams::default().labels(&format!("app={NAME}"));
    let to_running = wait_for("the first pod to be Running", Duration::from_secs(60), || async {
        let list = pods.list(&lp).await?;
        let running =
            list.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        anyhow::Ok(running >= 1)
    })
    .await;
    println!("pod created -> Running: {:.2}s", to_running.as_secs_f64());

    // 2. HPA at 50% CPU utilisation; wait until it reads metrics (metrics.k8s.io works).
    hpas.create(&PostParams::default(), &hpa()).await.expect("create hpa");
    let to_metrics =
        wait_for("the HPA to read pod CPU metrics from metrics.k8s.io", Duration::from_secs(120), || async {
            let h = hpas.get(NAME).await?;
            if cpu_utilization(&h).is_some() { anyhow::Ok(true) } else { Err(anyhow!(hpa_state(&h))) }
        })
        .await;
    let h = hpas.get(NAME).await.expect("get hpa");
    println!("HPA created -> first CPU metrics: {:.2}s ({})", to_metrics.as_secs_f64(), hpa_state(&h));
    let replicas = deploys.get(NAME).await.expect("get deployment").spec.and_then(|s| s.replicas);
    assert_eq!(replicas, Some(1), "low usage must not scale out: {}", hpa_state(&h));
    let util = cpu_utilization(&h).unwrap_or(-1);
    assert!((5..=20).contains(&util), "10m of a 100m request should read as ~10%: {}", hpa_state(&h));

    // 3. Raise usage to 200% of the request: expect ceil(1 * 200/50) = 4 replicas.
    set_usage(&deploys, "200m").await;
    let to_out = wait_for("the HPA to scale the Deployment out to >= 3 replicas", Duration::from_secs(180), || async {
        let d = deploys.get(NAME).await?;
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if replicas >= 3 {
            return anyhow::Ok(true);
        }
        let h = hpas.get(NAME).await?;
        Err(anyhow!("deployment replicas={replicas}; {}", hpa_state(&h)))
    })
    .await;
    let h = hpas.get(NAME).await.expect("get hpa");
    println!("usage raised -> HPA scaled out: {:.2}s ({})", to_out.as_secs_f64(), hpa_state(&h));

    let to_ready = wait_for("the scaled-out pods to be ready", Duration::from_secs(120), || async {
        let d = deploys.get(NAME).await?;
        let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
        if ready >= want && want >= 3 { anyhow::Ok(true) } else { Err(anyhow!("ready {ready}/{want}")) }
    })
    .await;
    println!("scaled-out replicas ready after a further {:.2}s", to_ready.as_secs_f64());

    // 4. Drop usage to 10%: expect the HPA to scale back in to minReplicas.
    set_usage(&deploys, "10m").await;
    let to_in = wait_for("the HPA to scale the Deployment back in to 1 replica", Duration::from_secs(240), || async {
        let d = deploys.get(NAME).await?;
        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if replicas == 1 {
            return anyhow::Ok(true);
        }
        let h = hpas.get(NAME).await?;
        Err(anyhow!("deployment replicas={replicas}; {}", hpa_state(&h)))
    })
    .await;
    let h = hpas.get(NAME).await.expect("get hpa");
    println!("usage lowered -> HPA scaled in: {:.2}s ({})", to_in.as_secs_f64(), hpa_state(&h));

    ns.cleanup().await;
}
