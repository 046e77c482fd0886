//! One test per validation rule: a valid object passes, and breaking one rule gives exactly the
//! field path and a message that says what is wrong.

use flotilla::api::{Microservice, rules};
use flotilla::validate::validate;

fn ms(spec: &str) -> Microservice {
    let yaml = format!(
        "apiVersion: flotilla.dev/v1alpha1\nkind: Microservice\nmetadata: {{name: api, namespace: team}}\nspec:\n{spec}"
    );
    serde_yaml_ng::from_str(&yaml).unwrap_or_else(|e| panic!("test input parses: {e}\n{yaml}"))
}

/// Asserts `spec` breaks exactly one rule at `path`, with a message containing `words`.
#[track_caller]
fn refused(spec: &str, path: &str, words: &str) {
    let errs = validate(&ms(spec));
    assert!(
        errs.iter().any(|e| e.path == path && e.message.contains(words)),
        "expected {path}: ...{words}... got {errs:?}"
    );
}

#[track_caller]
fn accepted(spec: &str) {
    let errs = validate(&ms(spec));
    assert!(errs.is_empty(), "expected valid, got {errs:?}");
}

#[test]
fn a_full_spec_is_valid() {
    accepted(
        r#"
  image: ghcr.io/acme/orders:1.4.2
  ports: [{name: http, port: 8080, appProtocol: http}, {name: grpc, port: 9000}]
  healthCheck: {path: /healthz, port: http}
  autoscaling: {minReplicas: 2, maxReplicas: 20, cpu: 70, memory: 80}
  database: {class: postgres, storage: 10Gi, deletionPolicy: Retain}
  dependencies:
    - service: payments
    - {service: users, namespace: identity, port: http}
    - external: {cidr: 203.0.113.0/24, ports: [443]}
  expose:
    ingress: {host: shop.example.com, path: /, className: nginx, tlsSecret: shop-tls}
    allowFrom: [{namespace: monitoring}]
  rollout: {maxSurge: 25%, maxUnavailable: 0, progressDeadlineSeconds: 600}
  disruption: {minAvailable: 1}
  pod: {labels: {team: checkout}, serviceAccountName: orders-runner}
"#,
    );
}

#[test]
fn name_rules() {
    let mut m = ms("  image: x\n");
    m.metadata.name = Some("a".repeat(46));
    assert!(validate(&m).iter().any(|e| e.path == "metadata.name" && e.message.contains("at most 45")));
    m.metadata.name = Some("9lives".into());
    assert!(
        validate(&m).iter().any(|e| e.path == "metadata.name" && e.message.contains("start with a lowercase letter"))
    );
    m.metadata.name = Some("Upper".into());
    assert!(validate(&m).iter().any(|e| e.path == "metadata.name" && e.message.contains("lowercase")));
    m.metadata.name = Some("a".repeat(45));
    assert!(validate(&m).is_empty());
}

#[test]
fn image_is_required() {
    refused("  image: ''\n", "spec.image", "is required");
    refused("  image: 'a b'\n", "spec.image", "whitespace");
}

#[test]
fn replicas_and_autoscaling_are_exclusive() {
    refused("  image: x\n  replicas: 2\n  autoscaling: {maxReplicas: 3}\n", "spec.replicas", "spec.autoscaling");
    refused("  image: x\n  replicas: -1\n", "spec.replicas", "out of range");
}

#[test]
fn autoscaling_bounds() {
    refused(
        "  image: x\n  autoscaling: {minReplicas: 4, maxReplicas: 3}\n",
        "spec.autoscaling.minReplicas",
        "greater than maxReplicas (3)",
    );
    refused(
        "  image: x\n  autoscaling: {minReplicas: 0, maxReplicas: 3}\n",
        "spec.autoscaling.minReplicas",
        "out of range",
    );
    refused("  image: x\n  autoscaling: {maxReplicas: 3, cpu: 0}\n", "spec.autoscaling.cpu", "out of range");
    accepted("  image: x\n  autoscaling: {minReplicas: 3, maxReplicas: 3}\n");
}

#[test]
fn port_rules() {
    refused("  image: x\n  ports: []\n", "spec.ports", "at least one port");
    refused(
        "  image: x\n  ports: [{name: http, port: 80}, {name: http, port: 81}]\n",
        "spec.ports[1].name",
        "port names must be unique; spec.ports[0] has it too",
    );
    refused(
        "  image: x\n  ports: [{name: a, port: 80}, {name: b, port: 80}]\n",
        "spec.ports[1].port",
        "80/TCP is already used",
    );
    accepted("  image: x\n  ports: [{name: a, port: 80}, {name: b, port: 80, protocol: UDP}]\n");
    refused("  image: x\n  ports: [{name: Http, port: 80}]\n", "spec.ports[0].name", "lowercase");
    refused("  image: x\n  ports: [{name: a-very-long-port-name, port: 80}]\n", "spec.ports[0].name", "at most 15");
    refused("  image: x\n  ports: [{name: '8080', port: 80}]\n", "spec.ports[0].name", "at least one letter");
    refused("  image: x\n  ports: [{name: a--b, port: 80}]\n", "spec.ports[0].name", "'--'");
    refused("  image: x\n  ports: [{name: http, port: 70000}]\n", "spec.ports[0].port", "out of range");
}

#[test]
fn health_check_rules() {
    refused("  image: x\n  healthCheck: {path: healthz}\n", "spec.healthCheck.path", "start with '/'");
    refused(
        "  image: x\n  healthCheck: {path: /h, port: admin}\n",
        "spec.healthCheck.port",
        "not the name of one of spec.ports",
    );
    refused("  image: x\n  healthCheck: {path: /h, port: 0}\n", "spec.healthCheck.port", "out of range");
    accepted("  image: x\n  healthCheck: {path: /h, port: 9999}\n");
    refused(
        "  image: x\n  healthCheck: {path: /h, livenessPath: livez}\n",
        "spec.healthCheck.livenessPath",
        "start with '/'",
    );
    accepted("  image: x\n  healthCheck: {path: /h, livenessPath: /livez}\n");
    // HTTP and TCP checks on a UDP port never succeed.
    let udp_first = "  ports: [{name: dns, port: 53, protocol: UDP}, {name: http, port: 8080}]\n";
    refused(
        &format!("  image: x\n{udp_first}  healthCheck: {{path: /h}}\n"),
        "spec.healthCheck",
        "\"dns\", which is UDP",
    );
    refused(
        &format!("  image: x\n{udp_first}  healthCheck: {{path: /h, port: dns}}\n"),
        "spec.healthCheck.port",
        "need a TCP port",
    );
    accepted(&format!("  image: x\n{udp_first}  healthCheck: {{path: /h, port: http}}\n"));
}

#[test]
fn pod_identity_rules() {
    refused(
        "  image: x\n  pod: {securityContext: {runAsUser: 0}}\n",
        "spec.pod.securityContext.runAsUser",
        "0 is root",
    );
    refused(
        "  image: x\n  pod: {securityContext: {runAsGroup: -1}}\n",
        "spec.pod.securityContext.runAsGroup",
        "out of range 0..=2147483647",
    );
    refused(
        "  image: x\n  pod: {securityContext: {fsGroup: 2147483648}}\n",
        "spec.pod.securityContext.fsGroup",
        "out of range",
    );
    accepted("  image: x\n  pod: {securityContext: {runAsUser: 10001, runAsGroup: 0, fsGroup: 10001}}\n");
}

#[test]
fn tmp_size_rules() {
    refused("  image: x\n  pod: {tmpSizeLimit: big}\n", "spec.pod.tmpSizeLimit", rules::TMP_SIZE_POSITIVE);
    refused("  image: x\n  pod: {tmpSizeLimit: '0'}\n", "spec.pod.tmpSizeLimit", rules::TMP_SIZE_POSITIVE);
    // Above the default ephemeral-storage limit (1Gi), and above a given one.
    refused("  image: x\n  pod: {tmpSizeLimit: 2Gi}\n", "spec.pod.tmpSizeLimit", "ephemeral-storage limit \"1Gi\"");
    refused(
        "  image: x\n  resources: {limits: {ephemeral-storage: 256Mi}}\n  pod: {tmpSizeLimit: 300Mi}\n",
        "spec.pod.tmpSizeLimit",
        "evicted before /tmp is full",
    );
    accepted("  image: x\n  resources: {limits: {ephemeral-storage: 8Gi}}\n  pod: {tmpSizeLimit: 4Gi}\n");
    // Resources that do not name ephemeral-storage get the default limit.
    accepted("  image: x\n  resources: {limits: {memory: 1Gi}}\n  pod: {tmpSizeLimit: 1Gi}\n");
    accepted("  image: x\n  pod: {tmpSizeLimit: 64Mi, spread: Disabled}\n");
}

#[test]
fn database_rules() {
    refused("  image: x\n  database: {storage: lots}\n", "spec.database.storage", rules::STORAGE_POSITIVE);
    refused("  image: x\n  database: {storage: '0'}\n", "spec.database.storage", rules::STORAGE_POSITIVE);
    refused("  image: x\n  database: {class: Postgres_17}\n", "spec.database.class", "DNS-1123");
    for ok in ["10Gi", "500M", "1.5Gi", "1e9", "+2Ti", "100"] {
        accepted(&format!("  image: x\n  database: {{storage: '{ok}'}}\n"));
    }
    for bad in ["Gi", "10 Gi", "1.2.3Gi", "10GB", "-1Gi", "e9"] {
        refused(&format!("  image: x\n  database: {{storage: '{bad}'}}\n"), "spec.database.storage", "quantity");
    }
}

#[test]
fn dependency_rules() {
    refused("  image: x\n  dependencies: [{}]\n", "spec.dependencies[0]", "exactly one of service or external");
    refused(
        "  image: x\n  dependencies: [{service: a, external: {cidr: 10.0.0.0/8}}]\n",
        "spec.dependencies[0]",
        "exactly one",
    );
    refused("  image: x\n  dependencies: [{service: api}]\n", "spec.dependencies[0].service", "this service itself");
    accepted("  image: x\n  dependencies: [{service: api, namespace: other}]\n");
    refused(
        "  image: x\n  dependencies: [{service: users}, {service: users, namespace: identity}]\n",
        "spec.dependencies[1].service",
        "USERS_URL",
    );
    refused("  image: x\n  dependencies: [{service: Users}]\n", "spec.dependencies[0].service", "lowercase");
    refused(
        "  image: x\n  dependencies: [{service: a, namespace: NS}]\n",
        "spec.dependencies[0].namespace",
        "lowercase",
    );
    refused(
        "  image: x\n  dependencies: [{external: {cidr: 10.0.0.0}}]\n",
        "spec.dependencies[0].external.cidr",
        rules::CIDR,
    );
    refused(
        "  image: x\n  dependencies: [{external: {cidr: 10.0.0.0/8, ports: [0]}}]\n",
        "spec.dependencies[0].external.ports[0]",
        "out of range",
    );
    refused(
        "  image: x\n  dependencies: [{external: {cidr: 10.0.0.0/8}, namespace: b}]\n",
        "spec.dependencies[0].namespace",
        "only to a service dependency",
    );
    accepted("  image: x\n  dependencies: [{external: {cidr: '2001:db8::/32'}}]\n");
}

#[test]
fn env_may_not_shadow_dependency_urls() {
    refused(
        "  image: x\n  env: [{name: USERS_URL, value: y}]\n  dependencies: [{service: users}]\n",
        "spec.env[0].name",
        "USERS_URL is set by spec.dependencies[0]",
    );
}

#[test]
fn expose_rules() {
    refused("  image: x\n  expose: {ingress: {host: Shop.Example.com}}\n", "spec.expose.ingress.host", "host name");
    accepted("  image: x\n  expose: {ingress: {host: '*.example.com'}}\n");
    refused("  image: x\n  expose: {ingress: {host: a.b, path: x}}\n", "spec.expose.ingress.path", "start with '/'");
    refused("  image: x\n  expose: {ingress: {host: a.b, port: admin}}\n", "spec.expose.ingress.port", "not the name");
    refused(
        "  image: x\n  expose: {allowFrom: [{namespace: Mon}]}\n",
        "spec.expose.allowFrom[0].namespace",
        "lowercase",
    );
}

#[test]
fn rollout_rules() {
    refused("  image: x\n  rollout: {maxSurge: 0}\n", "spec.rollout.maxSurge", "no rollout could ever make progress");
    refused("  image: x\n  rollout: {maxSurge: 0%, maxUnavailable: 0}\n", "spec.rollout.maxSurge", "progress");
    accepted("  image: x\n  rollout: {maxSurge: 0, maxUnavailable: 1}\n");
    refused("  image: x\n  rollout: {maxSurge: 150%}\n", "spec.rollout.maxSurge", "percentage");
    refused(
        "  image: x\n  rollout: {progressDeadlineSeconds: 0}\n",
        "spec.rollout.progressDeadlineSeconds",
        "at least 1",
    );
}

#[test]
fn disruption_rules() {
    refused("  image: x\n  disruption: {minAvailable: 1, maxUnavailable: 1}\n", "spec.disruption", "at most one");
    refused("  image: x\n  disruption: {minAvailable: many}\n", "spec.disruption.minAvailable", "percentage");
}

#[test]
fn pod_rules() {
    refused(
        "  image: x\n  pod: {labels: {app.kubernetes.io/name: other}}\n",
        "spec.pod.labels[\"app.kubernetes.io/name\"]",
        "set by Flotilla",
    );
    // Impersonating a database: its Service and NetworkPolicies select pods by this label.
    refused(
        "  image: x\n  pod: {labels: {flotilla.dev/database: worker}}\n",
        "spec.pod.labels[\"flotilla.dev/database\"]",
        "set by Flotilla",
    );
    refused(
        "  image: x\n  pod: {labels: {flotilla.dev/anything: a}}\n",
        "spec.pod.labels[\"flotilla.dev/anything\"]",
        "set by Flotilla",
    );
    accepted("  image: x\n  pod: {labels: {team.flotilla.dev/owner: a}}\n");
    refused("  image: x\n  pod: {labels: {team: 'a b'}}\n", "spec.pod.labels[\"team\"]", "value");
    refused("  image: x\n  pod: {labels: {'-bad': a}}\n", "spec.pod.labels[\"-bad\"]", "key");
    refused("  image: x\n  pod: {serviceAccountName: Runner}\n", "spec.pod.serviceAccountName", "DNS-1123");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let errs = validate(&ms(
        "  image: ''\n  replicas: 2\n  autoscaling: {minReplicas: 5, maxReplicas: 3}\n  dependencies: [{}]\n",
    ));
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    for p in ["spec.image", "spec.replicas", "spec.autoscaling.minReplicas", "spec.dependencies[0]"] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
}

/// What the API server would refuse in a child is refused here first, at the Microservice's field.
#[test]
fn children_the_api_server_would_refuse_are_refused_at_the_field() {
    // Environment.
    refused(
        "  image: x\n  env: [{name: A, value: '1'}, {name: A, value: '2'}]\n",
        "spec.env[1].name",
        "already set by spec.env[0]",
    );
    refused("  image: x\n  env: [{name: 'A=B', value: '1'}]\n", "spec.env[0].name", "other than '='");
    refused(
        "  image: x\n  env: [{name: A, value: '1', valueFrom: {fieldRef: {fieldPath: metadata.name}}}]\n",
        "spec.env[0]",
        "not both",
    );
    refused(
        "  image: x\n  database: {}\n  env: [{name: DATABASE_URL, value: y}]\n",
        "spec.env[0].name",
        "set by spec.database",
    );
    accepted("  image: x\n  env: [{name: DATABASE_URL, value: y}]\n");
    // Percentages and networks.
    refused("  image: x\n  rollout: {maxSurge: '+5%'}\n", "spec.rollout.maxSurge", "percentage");
    refused(
        "  image: x\n  dependencies: [{external: {cidr: 10.0.0.1/24}}]\n",
        "spec.dependencies[0].external.cidr",
        "the network is 10.0.0.0/24",
    );
    accepted("  image: x\n  dependencies: [{external: {cidr: '2001:DB8::/32'}}, {external: {cidr: 0.0.0.0/0}}]\n");
    refused(
        "  image: x\n  dependencies: [{external: {cidr: '2001:db8::1/64'}}]\n",
        "spec.dependencies[0].external.cidr",
        "2001:db8::/64",
    );
    // Scheduling.
    refused(
        "  image: x\n  pod: {tolerations: [{key: a, operator: Maybe}]}\n",
        "spec.pod.tolerations[0].operator",
        "Equal or Exists",
    );
    refused(
        "  image: x\n  pod: {tolerations: [{key: a, effect: Sometimes}]}\n",
        "spec.pod.tolerations[0].effect",
        "NoExecute",
    );
    refused(
        "  image: x\n  pod: {tolerations: [{key: a, operator: Exists, value: b}]}\n",
        "spec.pod.tolerations[0].value",
        "empty",
    );
    refused(
        "  image: x\n  pod: {tolerations: [{key: a, effect: NoSchedule, tolerationSeconds: 5}]}\n",
        "spec.pod.tolerations[0].tolerationSeconds",
        "NoExecute",
    );
    refused("  image: x\n  pod: {tolerations: [{value: b}]}\n", "spec.pod.tolerations[0].operator", "key is empty");
    accepted(
        "  image: x\n  pod: {tolerations: [{operator: Exists}, {key: a, effect: NoExecute, tolerationSeconds: 5}]}\n",
    );
    refused("  image: x\n  pod: {nodeSelector: {'bad key!': a}}\n", "spec.pod.nodeSelector[\"bad key!\"]", "key");
    refused("  image: x\n  pod: {annotations: {'-x': a}}\n", "spec.pod.annotations[\"-x\"]", "key");
    let spread = "{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}";
    refused(
        &format!("  image: x\n  pod: {{topologySpreadConstraints: [{spread}, {spread}]}}\n"),
        "spec.pod.topologySpreadConstraints[1]",
        "repeats spec.pod.topologySpreadConstraints[0]",
    );
    refused(
        "  image: x\n  pod: {topologySpreadConstraints: [{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: Never}]}\n",
        "spec.pod.topologySpreadConstraints[0].whenUnsatisfiable",
        "DoNotSchedule or ScheduleAnyway",
    );
    // Resources.
    refused(
        "  image: x\n  resources: {requests: {cpu: 2}, limits: {cpu: 1}}\n",
        "spec.resources.requests[\"cpu\"]",
        "greater than",
    );
    refused(
        "  image: x\n  resources: {requests: {gpus: 1}}\n",
        "spec.resources.requests[\"gpus\"]",
        "not a resource name",
    );
    refused("  image: x\n  resources: {requests: {cpu: lots}}\n", "spec.resources.requests[\"cpu\"]", "not a quantity");
    refused("  image: x\n  resources: {requests: {memory: -1Mi}}\n", "spec.resources.requests[\"memory\"]", "negative");
    accepted(
        "  image: x\n  resources: {requests: {cpu: 500m, nvidia.com/gpu: 1}, limits: {cpu: '1', nvidia.com/gpu: 1}}\n",
    );
    // An extended resource cannot be overcommitted: a request needs an equal limit, whole numbers.
    refused(
        "  image: x\n  resources: {requests: {nvidia.com/gpu: 1}}\n",
        "spec.resources.limits[\"nvidia.com/gpu\"]",
        "cannot be overcommitted",
    );
    refused(
        "  image: x\n  resources: {limits: {nvidia.com/gpu: 500m}}\n",
        "spec.resources.limits[\"nvidia.com/gpu\"]",
        "whole number",
    );
    refused(
        "  image: x\n  env: [{name: X, valueFrom: {fieldRef: {fieldPath: spec.bogus}}}]\n",
        "spec.env[0].valueFrom.fieldRef.fieldPath",
        "not a field a container can read",
    );
    refused(
        "  image: x\n  probes: {readiness: {tcpSocket: {port: 80}, terminationGracePeriodSeconds: 5}}\n  ports: [{name: http, port: 80}]\n",
        "spec.probes.readiness.terminationGracePeriodSeconds",
        "readiness",
    );
    refused(
        "  image: x\n  pod: {affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: ''}]}}}\n",
        "spec.pod.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey",
        "is required",
    );
    // Probes and ports.
    refused("  image: x\n  probes: {readiness: {periodSeconds: 5}}\n", "spec.probes.readiness", "needs one of");
    refused(
        "  image: x\n  probes: {readiness: {tcpSocket: {port: 80}, httpGet: {port: 80}}}\n",
        "spec.probes.readiness",
        "only one of",
    );
    refused(
        "  image: x\n  probes: {liveness: {tcpSocket: {port: 80}, successThreshold: 2}}\n",
        "spec.probes.liveness.successThreshold",
        "must be 1",
    );
    refused(
        "  image: x\n  probes: {startup: {tcpSocket: {port: 0}}}\n",
        "spec.probes.startup.tcpSocket.port",
        "out of range",
    );
    refused(
        "  image: x\n  probes: {readiness: {httpGet: {port: 80, scheme: FTP}}}\n",
        "spec.probes.readiness.httpGet.scheme",
        "HTTP or HTTPS",
    );
    refused(
        "  image: x\n  probes: {readiness: {httpGet: {port: 80, httpHeaders: [{name: 'X Y', value: a}]}}}\n",
        "spec.probes.readiness.httpGet.httpHeaders[0].name",
        "header name",
    );
    refused(
        "  image: x\n  ports: [{name: http, port: 80, appProtocol: 'not valid!'}]\n",
        "spec.ports[0].appProtocol",
        "IANA",
    );
    accepted("  image: x\n  ports: [{name: web, port: 80, appProtocol: kubernetes.io/h2c}]\n");
}

#[test]
fn exposure_autoscaling_and_env_sources_are_checked_like_their_children() {
    refused("  image: x\n  expose: {ingress: {host: 10.0.0.1}}\n", "spec.expose.ingress.host", "not an IP address");
    for path in ["//a", "/a/../b", "/a/.", "/a%2fb"] {
        refused(
            &format!("  image: x\n  expose: {{ingress: {{host: a.b, path: '{path}'}}}}\n"),
            "spec.expose.ingress.path",
            "must not contain",
        );
    }
    accepted("  image: x\n  expose: {ingress: {host: a.b, path: /shop/v1, className: nginx}}\n");
    refused(
        "  image: x\n  expose: {ingress: {host: a.b, className: Nginx_1}}\n",
        "spec.expose.ingress.className",
        "DNS-1123",
    );
    refused(
        "  image: x\n  expose: {allowFrom: [{namespace: mon, podSelector: {matchExpressions: [{key: app, operator: Like, values: [a]}]}}]}\n",
        "spec.expose.allowFrom[0].podSelector.matchExpressions[0].operator",
        "In, NotIn, Exists or DoesNotExist",
    );
    refused(
        "  image: x\n  expose: {allowFrom: [{namespace: mon, podSelector: {matchExpressions: [{key: app, operator: In}]}}]}\n",
        "spec.expose.allowFrom[0].podSelector.matchExpressions[0].values",
        "must not be empty",
    );
    refused(
        "  image: x\n  expose: {allowFrom: [{namespace: mon, podSelector: {matchLabels: {'a b': c}}}]}\n",
        "spec.expose.allowFrom[0].podSelector.matchLabels[\"a b\"]",
        "key",
    );
    let hpa = |behavior: &str| format!("  image: x\n  autoscaling: {{maxReplicas: 3, behavior: {behavior}}}\n");
    refused(
        &hpa("{scaleUp: {stabilizationWindowSeconds: 4000}}"),
        "spec.autoscaling.behavior.scaleUp.stabilizationWindowSeconds",
        "0..=3600",
    );
    refused(
        &hpa("{scaleDown: {policies: [{type: Replicas, value: 0, periodSeconds: 0}]}}"),
        "spec.autoscaling.behavior.scaleDown.policies[0].type",
        "Pods or Percent",
    );
    refused(
        &hpa("{scaleDown: {policies: [{type: Pods, value: 0, periodSeconds: 60}]}}"),
        "spec.autoscaling.behavior.scaleDown.policies[0].value",
        "at least 1",
    );
    refused(
        &hpa("{scaleUp: {selectPolicy: Most}}"),
        "spec.autoscaling.behavior.scaleUp.selectPolicy",
        "Max, Min or Disabled",
    );
    refused(
        "  image: x\n  autoscaling: {maxReplicas: 3, metrics: [{type: Pods}]}\n",
        "spec.autoscaling.metrics[0]",
        "needs its pods field",
    );
    refused(
        "  image: x\n  autoscaling: {maxReplicas: 3, metrics: [{type: Magic}]}\n",
        "spec.autoscaling.metrics[0].type",
        "must be Resource",
    );
    refused("  image: x\n  envFrom: [{prefix: A}]\n", "spec.envFrom[0]", "exactly one of configMapRef and secretRef");
    refused("  image: x\n  envFrom: [{secretRef: {name: Bad_Name}}]\n", "spec.envFrom[0].secretRef.name", "DNS-1123");
    accepted("  image: x\n  envFrom: [{configMapRef: {name: settings}, prefix: APP_}]\n");
}
