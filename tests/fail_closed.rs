//! Input that would leave a pod unprotected or a service half made is refused before anything
//! is rendered: names another Microservice's children need, and egress wider than asked for.

use std::sync::Arc;

use flotilla::api::Microservice;
use flotilla::render::{World, render};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

fn ms(name: &str, created: Option<i64>, spec: &str) -> Microservice {
    let yaml = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: {name}, namespace: team}}\nspec:\n{spec}"
    );
    let mut ms: Microservice = serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}"));
    ms.metadata.creation_timestamp = created.map(|s| Time(Timestamp::from_second(s).unwrap()));
    ms
}

fn world(items: &[&Microservice]) -> World {
    World { microservices: items.iter().map(|m| Arc::new((*m).clone())).collect(), ..World::default() }
}

/// The errors of rendering `ms` in `world`, as `path: message` lines.
fn refusal(ms: &Microservice, world: &World) -> Vec<String> {
    match render(ms, world) {
        Ok(_) => Vec::new(),
        Err(invalid) => invalid.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn the_first_of_two_clashing_names_keeps_them() {
    // `worker` with a database needs the Service and NetworkPolicy `worker-db`, as the
    // Microservice `worker-db` does.
    let with_db = "  image: example/worker:1\n  database: {class: postgres}\n";
    let plain = "  image: example/worker-db:1\n";

    // The service with the database came first: the newcomer `worker-db` is refused.
    let worker = ms("worker", Some(1_000), with_db);
    let worker_db = ms("worker-db", Some(2_000), plain);
    let w = world(&[&worker, &worker_db]);
    assert_eq!(refusal(&worker, &w), Vec::<String>::new());
    let errs = refusal(&worker_db, &w);
    assert!(
        errs.len() == 1
            && errs[0].starts_with("metadata.name: \"worker-db\" is the name of")
            && errs[0].contains("\"worker\""),
        "{errs:?}"
    );

    // `worker-db` came first: the database of `worker` is refused, and with it all of `worker`.
    let worker = ms("worker", Some(3_000), with_db);
    let w = world(&[&worker, &worker_db]);
    assert_eq!(refusal(&worker_db, &w), Vec::<String>::new());
    let errs = refusal(&worker, &w);
    assert!(errs.len() == 1 && errs[0].starts_with("spec.database: ") && errs[0].contains("\"worker-db\""), "{errs:?}");

    // Without creation times (files rendered offline) the order of the names decides.
    let worker = ms("worker", None, with_db);
    let worker_db = ms("worker-db", None, plain);
    let w = world(&[&worker_db, &worker]);
    assert!(refusal(&worker, &w).is_empty() && refusal(&worker_db, &w).len() == 1);

    // No database, no clash; another namespace, no clash.
    let worker = ms("worker", Some(3_000), "  image: example/worker:1\n");
    assert!(refusal(&worker_db, &world(&[&worker, &worker_db])).is_empty());
    let mut elsewhere = ms("worker", Some(1_000), with_db);
    elsewhere.metadata.namespace = Some("other".into());
    assert!(refusal(&worker_db, &world(&[&elsewhere, &worker_db])).is_empty());
}

#[test]
fn an_external_network_without_ports_is_reached_by_tcp_only() {
    let caller = ms("caller", None, "  image: x\n  dependencies:\n    - external: {cidr: 203.0.113.0/24}\n");
    let children = render(&caller, &world(&[&caller])).unwrap();
    let egress = children.network_policy.spec.unwrap().egress.unwrap();
    let rule = egress
        .iter()
        .find(|r| r.to.iter().flatten().any(|p| p.ip_block.as_ref().is_some_and(|b| b.cidr == "203.0.113.0/24")))
        .expect("a rule for the external network");
    let ports = rule.ports.as_ref().expect("ports are always listed: a rule without ports opens UDP and SCTP too");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(ports[0].port, None, "every TCP port");
}
