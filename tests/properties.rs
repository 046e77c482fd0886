//! Invariants of `render` over generated valid Microservices and worlds.

use std::collections::BTreeSet;
use std::sync::Arc;

use flotilla::api::contract::dependency_env_name;
use flotilla::api::{
    Autoscaling, Dependency, ExternalDependency, HealthCheck, Microservice, MicroserviceSpec, PortSpec,
};
use flotilla::render::{Children, World, render, to_yaml};
use flotilla::validate::{dns1123_label, validate};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,43}[a-z0-9])?"
}

fn short_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,11}"
}

fn ports() -> impl Strategy<Value = Option<Vec<PortSpec>>> {
    proptest::option::of(
        (proptest::collection::btree_set("[a-z]{1,10}", 1..4), proptest::collection::btree_set(1..65535i32, 4))
            .prop_map(|(names, numbers)| {
                names
                    .into_iter()
                    .zip(numbers)
                    .map(|(name, port)| PortSpec { name, port, ..Default::default() })
                    .collect()
            }),
    )
}

fn dependencies(own: String) -> impl Strategy<Value = Option<Vec<Dependency>>> {
    let service = (proptest::collection::btree_set(short_name(), 0..4), proptest::option::of(short_name()));
    let external = proptest::collection::vec(
        ((0u8..=255, 0u8..=255), 8u8..=32, proptest::option::of(proptest::collection::vec(1..65535i32, 1..3))),
        0..3,
    );
    (service, external).prop_map(move |((services, ns), externals)| {
        let mut deps: Vec<Dependency> = services
            .into_iter()
            .filter(|s| *s != own)
            .map(|s| Dependency { service: Some(s), namespace: ns.clone(), ..Default::default() })
            .collect();
        // Distinct names already give distinct env vars; one namespace for all keeps them unique.
        deps.extend(externals.into_iter().map(|((a, b), prefix, ports)| Dependency {
            external: Some(ExternalDependency { cidr: network(a, b, prefix), ports }),
            ..Default::default()
        }));
        Some(deps).filter(|d| !d.is_empty())
    })
}

prop_compose! {
    fn microservice()(name in name(), namespace in short_name())
        (ports in ports(), deps in dependencies(name.clone()), name in Just(name), namespace in Just(namespace),
         scaling in prop_oneof![
            proptest::option::of(0..50i32).prop_map(|r| (r, None)),
            (1..10i32, 0..10i32, proptest::option::of(1..200i32), proptest::option::of(1..200i32))
                .prop_map(|(min, extra, cpu, memory)| (None, Some(Autoscaling {
                    min_replicas: Some(min), max_replicas: min + extra, cpu, memory, ..Default::default()
                }))),
         ],
         health in proptest::option::of("/[a-z]{0,8}"))
    -> Microservice {
        let (replicas, autoscaling) = scaling;
        let mut ms = Microservice::new(&name, MicroserviceSpec {
            image: "registry.example/app:1.0".into(),
            ports,
            replicas,
            autoscaling,
            dependencies: deps,
            health_check: health.map(|path| HealthCheck { path, ..Default::default() }),
            ..Default::default()
        });
        ms.metadata.namespace = Some(namespace);
        ms
    }
}

/// The rendered service plus some others, some of which call it.
fn world_for(ms: Microservice) -> impl Strategy<Value = (Microservice, Vec<Microservice>)> {
    let target = (ms.metadata.name.clone().unwrap(), ms.metadata.namespace.clone().unwrap());
    proptest::collection::vec((microservice(), any::<bool>()), 0..4).prop_map(move |others| {
        let mut world = vec![ms.clone()];
        for (mut other, calls) in others {
            if calls && other.metadata.name != Some(target.0.clone()) {
                other.spec.dependencies.get_or_insert_with(Vec::new).retain(|d| d.service.is_none());
                other.spec.dependencies.as_mut().unwrap().push(Dependency {
                    service: Some(target.0.clone()),
                    namespace: Some(target.1.clone()),
                    ..Default::default()
                });
            }
            world.push(other);
        }
        (ms.clone(), world)
    })
}

/// The CIDR `a.b.0.0/prefix` with the bits after the prefix cleared, as a network is written.
fn network(a: u8, b: u8, prefix: u8) -> String {
    let ip = u32::from(std::net::Ipv4Addr::new(a, b, 0, 0)) & u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    format!("{}/{prefix}", std::net::Ipv4Addr::from(ip))
}

fn world(items: &[Microservice]) -> World {
    World { microservices: items.iter().cloned().map(Arc::new).collect(), ..World::default() }
}

fn yaml(c: &Children) -> String {
    to_yaml(&c.to_values().unwrap()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold((ms, items) in microservice().prop_flat_map(world_for)) {
        prop_assert!(validate(&ms).is_empty(), "generator made an invalid object: {:?}", validate(&ms));
        let w = world(&items);
        let c = render(&ms, &w).expect("valid input renders");
        let name = ms.metadata.name.clone().unwrap();
        let ns = ms.metadata.namespace.clone().unwrap();

        // Selectors match the pod labels.
        let dspec = c.deployment.spec.as_ref().unwrap();
        let pod_labels = dspec.template.metadata.as_ref().unwrap().labels.clone().unwrap();
        let matches = |sel: &std::collections::BTreeMap<String, String>| sel.iter().all(|(k, v)| pod_labels.get(k) == Some(v));
        prop_assert!(matches(dspec.selector.match_labels.as_ref().unwrap()));
        prop_assert!(matches(c.service.spec.as_ref().unwrap().selector.as_ref().unwrap()));
        prop_assert!(matches(c.network_policy.spec.as_ref().unwrap().pod_selector.as_ref().unwrap().match_labels.as_ref().unwrap()));
        if let Some(pdb) = &c.pdb {
            prop_assert!(matches(pdb.spec.as_ref().unwrap().selector.as_ref().unwrap().match_labels.as_ref().unwrap()));
        }

        // Every child name, and the container name, is a DNS-1123 label of at most 63 characters.
        for v in c.to_values().unwrap() {
            let n = v["metadata"]["name"].as_str().unwrap();
            prop_assert!(dns1123_label(n, 63).is_none(), "bad name {n}");
            prop_assert_eq!(v["metadata"]["namespace"].as_str(), Some(ns.as_str()));
            prop_assert_eq!(&v["metadata"]["labels"]["flotilla.dev/microservice"], &serde_json::json!(name));
        }
        let pod = dspec.template.spec.as_ref().unwrap();
        prop_assert!(dns1123_label(&pod.containers[0].name, 63).is_none());

        // No replicas under an HPA; an HPA exactly when autoscaling is set.
        prop_assert_eq!(ms.spec.autoscaling.is_some(), c.hpa.is_some());
        prop_assert_eq!(ms.spec.autoscaling.is_some(), dspec.replicas.is_none());
        if let Some(h) = &c.hpa {
            let h = h.spec.as_ref().unwrap();
            prop_assert!(h.min_replicas.unwrap() <= h.max_replicas);
            prop_assert!(!h.metrics.as_ref().unwrap().is_empty());
        }

        // The restricted security context is always there.
        let psc = pod.security_context.as_ref().unwrap();
        prop_assert_eq!(psc.run_as_non_root, Some(true));
        prop_assert_eq!(psc.seccomp_profile.as_ref().unwrap().type_.as_str(), "RuntimeDefault");
        let csc = pod.containers[0].security_context.as_ref().unwrap();
        prop_assert_eq!(csc.allow_privilege_escalation, Some(false));
        prop_assert_eq!(csc.read_only_root_filesystem, Some(true));
        prop_assert_eq!(csc.capabilities.as_ref().unwrap().drop.clone(), Some(vec!["ALL".to_string()]));
        prop_assert_eq!(pod.automount_service_account_token, Some(false));

        // Every service dependency has an env var and an egress rule to exactly its pods; every
        // external one an ipBlock rule.
        let np = c.network_policy.spec.as_ref().unwrap();
        let egress = np.egress.clone().unwrap();
        let env: BTreeSet<String> = pod.containers[0].env.iter().flatten().map(|e| e.name.clone()).collect();
        for d in ms.spec.dependencies.iter().flatten() {
            if let Some(svc) = &d.service {
                prop_assert!(env.contains(&dependency_env_name(svc)), "no env var for {}", svc);
                let dns = d.namespace.clone().unwrap_or(ns.clone());
                let found = egress.iter().any(|r| r.to.iter().flatten().any(|p| {
                    p.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|m| m.get("flotilla.dev/microservice")) == Some(svc)
                        && p.namespace_selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|m| m.get("kubernetes.io/metadata.name")) == Some(&dns)
                }));
                prop_assert!(found, "no egress rule for {}", svc);
            }
            if let Some(ext) = &d.external {
                prop_assert!(egress.iter().any(|r| r.to.iter().flatten().any(|p| p.ip_block.as_ref().map(|b| &b.cidr) == Some(&ext.cidr))));
            }
        }

        // DNS egress, UDP and TCP 53, is always allowed; both directions are default-deny.
        let dns_ports: BTreeSet<(String, i32)> = egress[0].ports.iter().flatten().map(|p| (p.protocol.clone().unwrap(), match p.port { Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(i)) => i, _ => 0 })).collect();
        prop_assert!(dns_ports.contains(&("UDP".into(), 53)) && dns_ports.contains(&("TCP".into(), 53)));
        prop_assert_eq!(np.policy_types.clone().unwrap(), vec!["Ingress".to_string(), "Egress".to_string()]);

        // Every caller of its own namespace is admitted by name; a caller from another namespace
        // never is, by its dependency alone (only `expose.allowFrom` admits other namespaces).
        let ingress = np.ingress.clone().unwrap_or_default();
        for caller in w.callers_of(&ns, &name) {
            let admitted = ingress.iter().any(|r| r.from.iter().flatten().any(|p| {
                p.pod_selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|m| m.get("flotilla.dev/microservice")) == Some(&caller.name)
                    && p.namespace_selector.as_ref().and_then(|s| s.match_labels.as_ref()).and_then(|m| m.get("kubernetes.io/metadata.name")) == Some(&caller.namespace)
            }));
            prop_assert_eq!(admitted, caller.namespace == ns, "caller {}/{} of {}/{}", caller.namespace, caller.name, ns, name);
        }

        // Deterministic: same input, byte-identical output, whatever the order of the world.
        let first = yaml(&c);
        prop_assert_eq!(&first, &yaml(&render(&ms, &w).unwrap()));
        let mut reversed = items.clone();
        reversed.reverse();
        prop_assert_eq!(&first, &yaml(&render(&ms, &world(&reversed)).unwrap()));
    }

    /// Arbitrary YAML never makes loading or validation panic.
    #[test]
    fn loading_never_panics(text in "(apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\n)?[ -~\n]{0,200}") {
        let mut out = flotilla::manifest::Manifests::default();
        let mut errors = Vec::new();
        flotilla::manifest::load_str(&text, std::path::Path::new("fuzz.yaml"), None, &mut out, &mut errors);
        for ms in &out.microservices {
            let _ = render(ms, &World::default());
        }
    }
}
