//! The Deployment: restricted pod security, probes, dependency URLs, no replicas under an HPA.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecretProjection, SecurityContext, TCPSocketAction,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::database;
use super::{Input, callee_port, selector_labels, service_url};
use crate::api::contract::{DATABASE_ENV, dependency_env_name};
use crate::api::defaults::{DEFAULT_TMP_SIZE_LIMIT, resources, within_ephemeral_limit};
use crate::api::{PodSettings, Protocol, Spread};

/// Default time a rollout may go without progress before it counts as failed.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

pub(super) fn deployment(input: &Input) -> Deployment {
    let spec = input.spec;
    let rollout = spec.rollout.clone().unwrap_or_default();
    let pod = spec.pod.clone().unwrap_or_default();
    let identity = pod.security_context.clone().unwrap_or_default();
    let resources = resources(spec.resources.as_ref());

    let pod_labels = super::pod_labels(input.ms);

    Deployment {
        metadata: input.meta(input.name),
        spec: Some(DeploymentSpec {
            // With autoscaling the HPA owns the replica count: leaving the field out of every apply
            // is what keeps the operator from fighting it.
            replicas: if spec.autoscaling.is_some() { None } else { Some(spec.replicas()) },
            selector: LabelSelector { match_labels: Some(selector_labels(input.name)), ..Default::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(rollout.max_surge.unwrap_or(IntOrString::String("25%".into()))),
                    max_unavailable: Some(rollout.max_unavailable.unwrap_or(IntOrString::Int(0))),
                }),
            }),
            progress_deadline_seconds: Some(
                rollout.progress_deadline_seconds.unwrap_or(DEFAULT_PROGRESS_DEADLINE_SECONDS),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: pod.annotations.clone().filter(|a| !a.is_empty()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(pod.service_account_name.clone().unwrap_or_else(|| input.name.into())),
                    automount_service_account_token: Some(spec.automount_token()),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: identity.run_as_user,
                        run_as_group: identity.run_as_group,
                        fs_group: identity.fs_group,
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    containers: vec![container(input, &resources)],
                    volumes: Some(volumes(input, &resources)),
                    node_selector: pod.node_selector.clone(),
                    tolerations: pod.tolerations.clone(),
                    affinity: affinity(input, &pod),
                    topology_spread_constraints: topology_spread(input, &pod),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Label of the topology domain "node"; every node carries it.
pub const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";
/// Label of the topology domain "zone"; cloud nodes carry it, many others do not.
pub const ZONE_TOPOLOGY: &str = "topology.kubernetes.io/zone";

/// The default spread over nodes: balance replicas (maxSkew 1) but never refuse to schedule.
/// `pod-template-hash` keeps a rollout's new pods balanced among themselves. Only the hostname:
/// a node missing any constrained key is left out of spread scoring, so a zone constraint here
/// would switch spreading off entirely on clusters whose nodes have no zone label.
fn topology_spread(input: &Input, pod: &PodSettings) -> Option<Vec<TopologySpreadConstraint>> {
    if let Some(own) = &pod.topology_spread_constraints {
        return Some(own.clone());
    }
    if pod.spread == Some(Spread::Disabled) {
        return None;
    }
    Some(vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: HOSTNAME_TOPOLOGY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector { match_labels: Some(selector_labels(input.name)), ..Default::default() }),
        match_label_keys: Some(vec!["pod-template-hash".into()]),
        ..Default::default()
    }])
}

/// The user's affinity, plus the default spread over zones: a preferred anti-affinity, which
/// scores nodes by how many replicas their zone already runs and does nothing where nodes have
/// no zone label. A `podAntiAffinity` of the user's replaces it.
fn affinity(input: &Input, pod: &PodSettings) -> Option<Affinity> {
    let mut affinity = pod.affinity.clone();
    if pod.spread == Some(Spread::Disabled) || affinity.as_ref().is_some_and(|a| a.pod_anti_affinity.is_some()) {
        return affinity;
    }
    affinity.get_or_insert_with(Affinity::default).pod_anti_affinity = Some(PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                topology_key: ZONE_TOPOLOGY.into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(input.name)),
                    ..Default::default()
                }),
                ..Default::default()
            },
        }]),
        ..Default::default()
    });
    affinity
}

/// The probes: given ones win; from `healthCheck`, readiness asks the HTTP path while liveness
/// and startup ask `livenessPath` or only the port (TCP), so that a failing dependency checked
/// by `path` takes pods out of the Service without restarting them all; without either, a
/// service that declares ports is ready once its first TCP port accepts connections.
fn probes(input: &Input) -> (Option<Probe>, Option<Probe>, Option<Probe>) {
    let spec = input.spec;
    let given = spec.probes.clone().unwrap_or_default();
    let probe = |action: &ProbeAction, period: i32, failures: i32| Probe {
        http_get: match action {
            ProbeAction::Http(path, port) => {
                Some(HTTPGetAction { path: Some(path.clone()), port: port.clone(), ..Default::default() })
            }
            ProbeAction::Tcp(_) => None,
        },
        tcp_socket: match action {
            ProbeAction::Tcp(port) => Some(TCPSocketAction { port: port.clone(), host: None }),
            ProbeAction::Http(..) => None,
        },
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(1),
        ..Default::default()
    };
    let (ready, live) = match &spec.health_check {
        Some(hc) => {
            let port = hc.port.clone().unwrap_or_else(|| IntOrString::String(input.ports[0].name.clone()));
            let live = match &hc.liveness_path {
                Some(path) => ProbeAction::Http(path.clone(), port.clone()),
                None => ProbeAction::Tcp(port.clone()),
            };
            (Some(ProbeAction::Http(hc.path.clone(), port)), Some(live))
        }
        None => {
            let first_tcp = spec
                .ports
                .iter()
                .flatten()
                .find(|p| p.protocol() == Protocol::TCP)
                .map(|p| ProbeAction::Tcp(IntOrString::String(p.name.clone())));
            (first_tcp, None)
        }
    };
    (
        given.readiness.or_else(|| ready.as_ref().map(|a| probe(a, 5, 3))),
        given.liveness.or_else(|| live.as_ref().map(|a| probe(a, 10, 3))),
        // Up to 5 minutes to start before liveness takes over.
        given.startup.or_else(|| live.as_ref().map(|a| probe(a, 5, 60))),
    )
}

enum ProbeAction {
    Http(String, IntOrString),
    Tcp(IntOrString),
}

fn container(input: &Input, resources: &ResourceRequirements) -> Container {
    let spec = input.spec;
    let (readiness_probe, liveness_probe, startup_probe) = probes(input);

    Container {
        name: input.name.into(),
        image: Some(spec.image.clone()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        ports: Some(
            input
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol().as_str().into()),
                    ..Default::default()
                })
                .collect(),
        ),
        env: Some(env(input)).filter(|e| !e.is_empty()),
        env_from: spec.env_from.clone(),
        resources: Some(resources.clone()),
        readiness_probe,
        liveness_probe,
        startup_probe,
        security_context: Some(restricted_container()),
        volume_mounts: Some(volume_mounts(input)),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

/// The container half of the restricted Pod Security Standard, plus a read-only root filesystem.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Dependency URLs first, so the user's own variables can refer to them with `$(NAME)`.
fn env(input: &Input) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = input
        .spec
        .dependencies
        .iter()
        .flatten()
        .filter_map(|d| {
            let (ns, svc) = d.target(input.namespace)?;
            let callee = input.world.find(ns, svc);
            let port = callee_port(callee.as_deref().map(|m| &m.spec), d.port.as_deref());
            Some(EnvVar {
                name: dependency_env_name(svc),
                value: Some(service_url(svc, ns, &port, &input.world.settings)),
                ..Default::default()
            })
        })
        .collect();
    if input.spec.database.is_some() {
        let secret = database::binding_secret_name(input.name);
        let from = |name: &str, key: &str| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.clone(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        env.extend(DATABASE_ENV.iter().map(|(name, key)| from(name, key)));
        env.extend([EnvVar {
            name: "SERVICE_BINDING_ROOT".into(),
            value: Some(database::SERVICE_BINDING_ROOT.into()),
            ..Default::default()
        }]);
    }
    env.extend(input.spec.env.iter().flatten().cloned());
    env
}

fn volumes(input: &Input, resources: &ResourceRequirements) -> Vec<Volume> {
    let size = input.spec.pod.as_ref().and_then(|p| p.tmp_size_limit.clone());
    let mut v = vec![Volume {
        name: "tmp".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: Some(Quantity(
                size.unwrap_or_else(|| within_ephemeral_limit(DEFAULT_TMP_SIZE_LIMIT, resources).to_string()),
            )),
            ..Default::default()
        }),
        ..Default::default()
    }];
    if input.spec.database.is_some() {
        v.push(Volume {
            name: "binding-db".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    secret: Some(SecretProjection {
                        name: database::binding_secret_name(input.name),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    v
}

fn volume_mounts(input: &Input) -> Vec<VolumeMount> {
    let mut m = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }];
    if input.spec.database.is_some() {
        m.push(VolumeMount {
            name: "binding-db".into(),
            mount_path: format!("{}/db", database::SERVICE_BINDING_ROOT),
            read_only: Some(true),
            ..Default::default()
        });
    }
    m
}
