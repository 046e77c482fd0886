//! A shared cluster: two tenants, each allowed (by real RBAC, impersonated) to write
//! Microservices in its own namespaces only, and one operator over every namespace with a
//! platform policy. Each way a tenant could reach another's objects through Flotilla is tried by
//! the attacker tenant and shown refused or contained, with nothing of the other tenant changed
//! (the resourceVersions of its objects are compared), and consent (the callee's
//! `expose.allowFrom`, or the platform's tenants) shown to work. Needs `make cluster-up`.

mod operator;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use flotilla::api::Microservice;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, ResourceExt};
use operator::{Operator, OperatorOptions, apply_ms, install};
use serde_json::{Value, json};
use support::{TestNamespace, client, kubeconfig_path, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// A client that acts as `user`, with only the rights RBAC gives that user.
async fn as_user(user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.expect("kube config");
    config.auth_info.impersonate = Some(user.into());
    Client::try_from(config).expect("client")
}

/// Lets `user` write Microservices in `namespace`, and nothing else: a tenant.
async fn grant(admin: &Client, namespace: &str, user: &str) {
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "microservice-editor", "namespace": namespace},
        "rules": [{"apiGroups": ["flotilla.dev"], "resources": ["microservices"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}],
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": format!("microservice-editor-{user}"), "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "microservice-editor"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    let pp = PatchParams::apply("flotilla-tests").force();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .patch("microservice-editor", &pp, &Patch::Apply(&role))
        .await
        .unwrap();
    let name = binding.name_any();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace).patch(&name, &pp, &Patch::Apply(&binding)).await.unwrap();
}

/// Every object Flotilla may write in `namespace` (and the namespace's Ingresses), by kind and
/// name, with its resourceVersion.
async fn versions(client: &Client, namespace: &str) -> BTreeMap<String, String> {
    async fn of<K>(client: &Client, ns: &str, out: &mut BTreeMap<String, String>)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(client.clone(), ns);
        for o in api.list(&ListParams::default()).await.unwrap() {
            let kind = K::kind(&K::DynamicType::default()).to_string();
            out.insert(format!("{kind}/{}", o.name_any()), o.resource_version().unwrap_or_default());
        }
    }
    let mut out = BTreeMap::new();
    of::<Deployment>(client, namespace, &mut out).await;
    of::<Service>(client, namespace, &mut out).await;
    of::<ServiceAccount>(client, namespace, &mut out).await;
    of::<NetworkPolicy>(client, namespace, &mut out).await;
    of::<Ingress>(client, namespace, &mut out).await;
    of::<PodDisruptionBudget>(client, namespace, &mut out).await;
    of::<Microservice>(client, namespace, &mut out).await;
    out
}

fn condition(ms: &Microservice, type_: &str) -> Option<(String, String, String)> {
    let c = ms.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until `name`'s condition `type_` has `status` and `reason` and its message holds every
/// one of `words`; returns the message.
async fn wait_condition(
    api: &Api<Microservice>,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    words: &[&str],
) -> String {
    let found = std::sync::Mutex::new(String::new());
    wait_for(&format!("{name}: {type_}={status} ({reason}) saying {words:?}"), WAIT, || async {
        let ms = api.get(name).await?;
        let Some((s, r, m)) = condition(&ms, type_) else { return Err(anyhow!("no {type_} condition yet")) };
        if s == status && r == reason && words.iter().all(|w| m.contains(w)) {
            *found.lock().unwrap() = m;
            anyhow::Ok(true)
        } else {
            Err(anyhow!("{type_}={s} ({r}): {m}"))
        }
    })
    .await;
    found.into_inner().unwrap()
}

/// The ingress rules of NetworkPolicy `name`, as JSON text per rule.
async fn ingress_rules(api: &Api<NetworkPolicy>, name: &str) -> Vec<Value> {
    let np = api.get(name).await.unwrap();
    let rules = np.spec.and_then(|s| s.ingress).unwrap_or_default();
    rules.iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

/// Whether a rule admits pods of `namespace` (by its namespace selector).
fn from_namespace(rule: &Value, namespace: &str) -> bool {
    rule["from"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|p| p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace)
}

#[tokio::test]
async fn one_tenant_cannot_open_claim_or_reach_what_is_another_s() {
    let Some(admin) = client().await else { return };
    install(&admin).await;
    let shop = TestNamespace::new(&admin, "tenant-shop").await;
    let shop2 = TestNamespace::new(&admin, "tenant-shop-admin").await;
    let attacker = TestNamespace::new(&admin, "tenant-attacker").await;
    let (sn, s2n, an) = (shop.name().to_string(), shop2.name().to_string(), attacker.name().to_string());
    let www = format!("www-{sn}.example.com");
    let legacy = format!("legacy-{sn}.example.com");

    // The platform's policy: the shop team owns two namespaces; hosts by pattern, plus one shared
    // name any namespace may try to claim (the first holds it); a denied network; a class only
    // the shop may use.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-logs");
    std::fs::create_dir_all(&dir).unwrap();
    let policy_file = dir.join(format!("policy-{sn}.yaml"));
    std::fs::write(
        &policy_file,
        format!(
            "tenants: [{{name: shop, namespaces: [{sn}, {s2n}]}}]\n\
             egress: {{deniedCidrs: [10.250.0.0/16]}}\n\
             ingress: {{hosts: ['*.{{namespace}}.apps.example.com', '{www}', '{legacy}']}}\n\
             databaseClasses: [{{class: prod-{sn}, namespaces: [{sn}]}}]\n"
        ),
    )
    .unwrap();
    let lease = format!("lease-{sn}");
    let args = [format!("--policy={}", policy_file.display())];
    let mut op = Operator::start_with(
        &OperatorOptions { namespace: None, lease: &lease, tag: "tenants" },
        &args,
        "info,flotilla=debug,kube=warn",
    );
    op.wait_ready().await;
    op.wait_leading(&admin).await;

    // Two tenants, by RBAC: alice writes Microservices in the shop's namespaces, mallory in hers.
    let (alice_user, mallory_user) = (format!("alice-{sn}"), format!("mallory-{sn}"));
    grant(&admin, &sn, &alice_user).await;
    grant(&admin, &s2n, &alice_user).await;
    grant(&admin, &an, &mallory_user).await;
    let (alice, mallory) = (as_user(&alice_user).await, as_user(&mallory_user).await);
    let shop_ms: Api<Microservice> = Api::namespaced(alice.clone(), &sn);
    let shop2_ms: Api<Microservice> = Api::namespaced(alice.clone(), &s2n);
    let evil: Api<Microservice> = Api::namespaced(mallory.clone(), &an);
    let shop_np: Api<NetworkPolicy> = Api::namespaced(admin.clone(), &sn);

    // RBAC holds: mallory cannot write in the shop's namespace herself.
    let refused = apply_ms(&Api::namespaced(mallory.clone(), &sn), "intruder", json!({"image": "x:1"})).await;
    assert!(matches!(&refused, Err(kube::Error::Api(s)) if s.code == 403), "{refused:?}");

    // The shop: payments (with an admin port), orders calling it, web on the shared host, and
    // an Ingress made by hand (not by Flotilla) holding another host.
    apply_ms(
        &shop_ms,
        "payments",
        json!({"image": "registry.example/payments:1",
        "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]}),
    )
    .await
    .unwrap();
    apply_ms(
        &shop_ms,
        "orders",
        json!({"image": "registry.example/orders:1", "dependencies": [{"service": "payments"}]}),
    )
    .await
    .unwrap();
    apply_ms(
        &shop_ms,
        "web",
        json!({"image": "registry.example/web:1", "expose": {"ingress": {"host": www, "path": "/"}}}),
    )
    .await
    .unwrap();
    let hand_made: Ingress = serde_json::from_value(json!({
        "metadata": {"name": "legacy", "namespace": sn},
        "spec": {"rules": [{"host": legacy, "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "legacy", "port": {"number": 80}}}}]}}]},
    }))
    .unwrap();
    Api::<Ingress>::namespaced(admin.clone(), &sn)
        .patch("legacy", &PatchParams::apply("flotilla-tests"), &Patch::Apply(&hand_made))
        .await
        .unwrap();
    for name in ["payments", "orders", "web"] {
        wait_condition(&shop_ms, name, "Ready", "True", "RolloutComplete", &[]).await;
    }
    let before = versions(&admin, &sn).await;
    assert!(before.contains_key("Ingress/web") && before.contains_key("NetworkPolicy/payments"), "{before:?}");

    // The attacker tries everything at once.
    let attempts = [
        // 1. Open payments' admin port to itself, and ledger's before it exists.
        (
            "probe",
            json!({"image": "x:1", "dependencies": [
            {"service": "payments", "namespace": sn, "port": "admin"}, {"service": "ledger", "namespace": sn}]}),
        ),
        // 3. A path of the shop's host; a host of the shop's pattern; a wildcard; a hand-made Ingress's host.
        ("fake-login", json!({"image": "x:1", "expose": {"ingress": {"host": www, "path": "/login"}}})),
        ("shop-host", json!({"image": "x:1", "expose": {"ingress": {"host": format!("login.{sn}.apps.example.com")}}})),
        ("wildcard", json!({"image": "x:1", "expose": {"ingress": {"host": "*.example.com"}}})),
        ("legacy", json!({"image": "x:1", "expose": {"ingress": {"host": legacy}}})),
        // 4. Probes that reach elsewhere from the node.
        (
            "metadata-probe",
            json!({"image": "x:1", "probes": {
            "readiness": {"httpGet": {"host": "169.254.169.254", "path": "/latest/meta-data/", "port": 80,
                          "httpHeaders": [{"name": "Metadata-Flavor", "value": "Google"}]}},
            "liveness": {"tcpSocket": {"host": format!("payments.{sn}.svc.cluster.local"), "port": 9090}}}}),
        ),
        // 5. Egress to the cloud's metadata address, and to everything.
        ("imds", json!({"image": "x:1", "dependencies": [{"external": {"cidr": "169.254.169.254/32"}}]})),
        ("everywhere", json!({"image": "x:1", "dependencies": [{"external": {"cidr": "0.0.0.0/0"}}]})),
        // 6. The control plane's nodes, an annotation the platform's controllers read, no ceilings.
        (
            "control-plane",
            json!({"image": "x:1", "pod": {
            "nodeSelector": {"node-role.kubernetes.io/control-plane": ""}, "tolerations": [{"operator": "Exists"}],
            "annotations": {"container.apparmor.security.beta.kubernetes.io/app": "unconfined"}}}),
        ),
        (
            "greedy",
            json!({"image": "x:1", "autoscaling": {"maxReplicas": 1000},
            "resources": {"limits": {"cpu": "64", "memory": "512Gi"}},
            "database": {"class": format!("prod-{sn}"), "storage": "10Ti"}}),
        ),
    ];
    for (name, spec) in &attempts {
        apply_ms(&evil, name, spec.clone()).await.unwrap_or_else(|e| panic!("the API server refused {name}: {e}"));
    }
    // 2. Many callers of one service: with consent required they add nothing to its policy.
    for i in 0..20 {
        apply_ms(
            &evil,
            &format!("caller-{i}"),
            json!({"image": "x:1", "dependencies": [{"service": "payments", "namespace": sn}]}),
        )
        .await
        .unwrap();
    }
    // The shop's ledger appears after the attacker named it.
    apply_ms(&shop_ms, "ledger", json!({"image": "registry.example/ledger:1"})).await.unwrap();

    let not_admitted = wait_condition(
        &evil,
        "probe",
        "DependenciesReady",
        "False",
        "NotAdmitted",
        &[&format!("{sn}/payments"), &format!("{sn}/ledger"), "expose.allowFrom", &an],
    )
    .await;
    println!("probe: {not_admitted}");
    wait_condition(&evil, "caller-19", "DependenciesReady", "False", "NotAdmitted", &[&format!("{sn}/payments")]).await;
    // A caller without consent still gets its own egress (its side is its own).
    let egress =
        serde_json::to_string(&Api::<NetworkPolicy>::namespaced(admin.clone(), &an).get("probe").await.unwrap())
            .unwrap();
    assert!(egress.contains("\"port\":9090"), "probe's own egress to the admin port: {egress}");

    let stalled = |name: &'static str, reason: &'static str, words: Vec<String>| {
        let (evil, deployments) = (evil.clone(), Api::<Deployment>::namespaced(admin.clone(), &an));
        async move {
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let m = wait_condition(&evil, name, "Stalled", "True", reason, &words).await;
            println!("{name}: {reason}: {m}");
            // Refused before anything was written.
            assert!(deployments.get_opt(name).await.unwrap().is_none(), "{name} has a Deployment");
        }
    };
    stalled("fake-login", "HostTaken", vec![www.clone(), format!("{sn}/web"), "spec.expose.ingress.host".into()]).await;
    stalled("legacy", "HostTaken", vec![legacy.clone(), format!("Ingress {sn}/legacy")]).await;
    stalled("shop-host", "PolicyDenied", vec!["ingress.hosts".into(), format!("*.{an}.apps.example.com")]).await;
    stalled("wildcard", "PolicyDenied", vec!["ingress.wildcardHosts".into()]).await;
    stalled(
        "metadata-probe",
        "InvalidSpec",
        vec![
            "spec.probes.readiness.httpGet.host".into(),
            "spec.probes.liveness.tcpSocket.host".into(),
            "outside every NetworkPolicy".into(),
        ],
    )
    .await;
    stalled("imds", "PolicyDenied", vec!["spec.dependencies[0].external.cidr".into(), "169.254.0.0/16".into()]).await;
    stalled(
        "control-plane",
        "PolicyDenied",
        vec![
            "spec.pod.nodeSelector[\"node-role.kubernetes.io/control-plane\"]".into(),
            "scheduling.nodeSelectorKeys".into(),
            "spec.pod.tolerations[0]".into(),
            "scheduling.tolerationKeys".into(),
            "spec.pod.annotations[\"container.apparmor.security.beta.kubernetes.io/app\"]".into(),
            "pod.annotationPrefixes".into(),
        ],
    )
    .await;
    stalled(
        "greedy",
        "PolicyDenied",
        vec![
            "spec.autoscaling.maxReplicas".into(),
            "ceilings.replicas".into(),
            "spec.resources.limits[\"cpu\"]".into(),
            "spec.resources.limits[\"memory\"]".into(),
            "spec.database.storage".into(),
            "spec.database.class".into(),
            format!("not open to namespace {an}"),
        ],
    )
    .await;
    // Egress to everything keeps out link-local and what the platform denies.
    wait_condition(&evil, "everywhere", "Ready", "True", "RolloutComplete", &[]).await;
    let np = Api::<NetworkPolicy>::namespaced(admin.clone(), &an).get("everywhere").await.unwrap();
    let block = np
        .spec
        .unwrap()
        .egress
        .unwrap()
        .iter()
        .flat_map(|r| r.to.clone().unwrap_or_default())
        .find_map(|p| p.ip_block)
        .unwrap();
    assert_eq!(
        (block.cidr.as_str(), block.except.unwrap_or_default()),
        ("0.0.0.0/0", vec!["169.254.0.0/16".to_string(), "10.250.0.0/16".into()])
    );

    // Nothing of the shop changed: every object it had has the same resourceVersion (ledger's
    // are new, and its policy admits no attacker).
    wait_condition(&shop_ms, "ledger", "Ready", "True", "RolloutComplete", &[]).await;
    let after = versions(&admin, &sn).await;
    for (k, v) in &before {
        assert_eq!(after.get(k), Some(v), "{k} changed while the attacker acted");
    }
    for np in ["payments", "ledger"] {
        let rules = ingress_rules(&shop_np, np).await;
        assert!(rules.iter().all(|r| !from_namespace(r, &an)), "{np} admits the attacker: {rules:?}");
    }
    assert_eq!(ingress_rules(&shop_np, "payments").await.len(), 1, "payments admits orders alone");
    let web = Api::<Ingress>::namespaced(admin.clone(), &an).get_opt("fake-login").await.unwrap();
    assert!(web.is_none(), "no Ingress for the attacker's claim");

    // Consent: the shop admits the attacker's probe on payments; the probe's condition follows,
    // and ledger (which did not consent) is still named.
    apply_ms(
        &shop_ms,
        "payments",
        json!({"image": "registry.example/payments:1",
        "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}],
        "expose": {"allowFrom": [{"namespace": an, "services": ["probe"]}]}}),
    )
    .await
    .unwrap();
    wait_for("payments to admit the probe by name", WAIT, || async {
        let rules = ingress_rules(&shop_np, "payments").await;
        let text = serde_json::to_string(&rules).unwrap();
        anyhow::Ok(rules.iter().any(|r| from_namespace(r, &an)) && text.contains("\"values\":[\"probe\"]"))
    })
    .await;
    let (ledger, payments) = (format!("{sn}/ledger"), format!("{sn}/payments"));
    // The probe is told once it is reconciled after the change: wait for the new words, not the old.
    wait_for("probe: NotAdmitted naming ledger alone", WAIT, || async {
        let ms = evil.get("probe").await?;
        let (s, r, m) = condition(&ms, "DependenciesReady").ok_or_else(|| anyhow!("no condition"))?;
        if s == "False" && r == "NotAdmitted" && m.contains(&ledger) && !m.contains(&payments) {
            anyhow::Ok(true)
        } else {
            Err(anyhow!("{s} ({r}): {m}"))
        }
    })
    .await;
    wait_condition(&evil, "caller-3", "DependenciesReady", "False", "NotAdmitted", &[&format!("{sn}/payments")]).await;

    // One tenant over two namespaces: the platform says so, and a caller there is admitted by its
    // dependency alone; it may share the team's host on a path of its own.
    apply_ms(
        &shop2_ms,
        "reports",
        json!({"image": "registry.example/reports:1",
        "dependencies": [{"service": "orders", "namespace": sn}],
        "expose": {"ingress": {"host": www, "path": "/reports"}}}),
    )
    .await
    .unwrap();
    wait_condition(&shop2_ms, "reports", "DependenciesReady", "True", "AllFound", &[]).await;
    wait_condition(&shop2_ms, "reports", "Ready", "True", "RolloutComplete", &[]).await;
    wait_for("orders to admit reports of the same tenant", WAIT, || async {
        let text = serde_json::to_string(&ingress_rules(&shop_np, "orders").await).unwrap();
        anyhow::Ok(text.contains(&s2n) && text.contains("\"flotilla.dev/microservice\":\"reports\""))
    })
    .await;

    // When the holder gives the host up, the next claim in line takes it without a change of its own.
    apply_ms(&shop_ms, "web", json!({"image": "registry.example/web:1"})).await.unwrap();
    shop2_ms.delete("reports", &Default::default()).await.unwrap();
    wait_condition(&evil, "fake-login", "Ready", "True", "RolloutComplete", &[]).await;

    op.kill();
    for ns in [shop, shop2, attacker] {
        ns.cleanup().await;
    }
}
