//! The Deployment: restricted pod security, probes, dependency URLs, no replicas under an HPA.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecretProjection, SecurityContext, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cx, callee_port, dependency_env_name, selector_labels, service_url};
use crate::database;

/// Default time a rollout may go without progress before it counts as failed.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;

pub(super) fn deployment(cx: &Cx) -> Deployment {
    let spec = cx.spec;
    let rollout = spec.rollout.clone().unwrap_or_default();
    let pod = spec.pod.clone().unwrap_or_default();

    let mut pod_labels = cx.labels();
    for (k, v) in pod.labels.iter().flatten() {
        pod_labels.entry(k.clone()).or_insert_with(|| v.clone());
    }

    Deployment {
        metadata: cx.meta(cx.name),
        spec: Some(DeploymentSpec {
            // With autoscaling the HPA owns the replica count: leaving the field out of every apply
            // is what keeps the operator from fighting it.
            replicas: if spec.autoscaling.is_some() { None } else { Some(spec.replicas.unwrap_or(1)) },
            selector: LabelSelector { match_labels: Some(selector_labels(cx.name)), ..Default::default() },
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
                    service_account_name: Some(pod.service_account_name.clone().unwrap_or_else(|| cx.name.into())),
                    automount_service_account_token: Some(pod.automount_service_account_token.unwrap_or(false)),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    containers: vec![container(cx)],
                    volumes: Some(volumes(cx)),
                    node_selector: pod.node_selector.clone(),
                    tolerations: pod.tolerations.clone(),
                    affinity: pod.affinity.clone(),
                    topology_spread_constraints: pod.topology_spread_constraints.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn container(cx: &Cx) -> Container {
    let spec = cx.spec;
    let probes = spec.probes.clone().unwrap_or_default();
    let http = spec.health_check.as_ref().map(|hc| HTTPGetAction {
        path: Some(hc.path.clone()),
        port: hc.port.clone().unwrap_or_else(|| IntOrString::String(cx.ports[0].name.clone())),
        ..Default::default()
    });
    let shorthand = |period: i32, failures: i32| {
        http.clone().map(|h| Probe {
            http_get: Some(h),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            timeout_seconds: Some(1),
            ..Default::default()
        })
    };

    Container {
        name: cx.name.into(),
        image: Some(spec.image.clone()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        ports: Some(
            cx.ports
                .iter()
                .map(|p| ContainerPort {
                    name: Some(p.name.clone()),
                    container_port: p.port,
                    protocol: Some(p.protocol.map(|p| p.as_str()).unwrap_or("TCP").into()),
                    ..Default::default()
                })
                .collect(),
        ),
        env: Some(env(cx)).filter(|e| !e.is_empty()),
        env_from: spec.env_from.clone(),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        readiness_probe: probes.readiness.or_else(|| shorthand(5, 3)),
        liveness_probe: probes.liveness.or_else(|| shorthand(10, 3)),
        // Up to 5 minutes to start before liveness takes over.
        startup_probe: probes.startup.or_else(|| shorthand(5, 60)),
        security_context: Some(restricted_container()),
        volume_mounts: Some(volume_mounts(cx)),
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
fn env(cx: &Cx) -> Vec<EnvVar> {
    let mut env: Vec<EnvVar> = cx
        .spec
        .dependencies
        .iter()
        .flatten()
        .filter_map(|d| {
            let (ns, svc) = d.target(cx.namespace)?;
            let port = callee_port(cx.world.find(ns, svc).map(|m| &m.spec), d.port.as_deref());
            Some(EnvVar {
                name: dependency_env_name(svc),
                value: Some(service_url(svc, ns, &port, &cx.world.settings)),
                ..Default::default()
            })
        })
        .collect();
    if cx.spec.database.is_some() {
        let secret = database::binding_secret_name(cx.name);
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
    env.extend(cx.spec.env.iter().flatten().cloned());
    env
}

/// The variables a service with a database gets from its binding Secret (name, key), besides
/// `SERVICE_BINDING_ROOT`.
pub const DATABASE_ENV: [(&str, &str); 6] = [
    ("DATABASE_URL", "uri"),
    ("DB_HOST", "host"),
    ("DB_PORT", "port"),
    ("DB_USER", "username"),
    ("DB_PASSWORD", "password"),
    ("DB_NAME", "database"),
];

fn volumes(cx: &Cx) -> Vec<Volume> {
    let mut v =
        vec![Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }];
    if cx.spec.database.is_some() {
        v.push(Volume {
            name: "binding-db".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    secret: Some(SecretProjection {
                        name: database::binding_secret_name(cx.name),
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

fn volume_mounts(cx: &Cx) -> Vec<VolumeMount> {
    let mut m = vec![VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() }];
    if cx.spec.database.is_some() {
        m.push(VolumeMount {
            name: "binding-db".into(),
            mount_path: format!("{}/db", database::SERVICE_BINDING_ROOT),
            read_only: Some(true),
            ..Default::default()
        });
    }
    m
}

/// Requests that let the scheduler and the HPA work, and a memory limit that keeps one leaking
/// pod from starving its node. No CPU limit: throttling hurts latency more than it protects.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("100m".into())),
            ("memory".into(), Quantity("128Mi".into())),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), Quantity("256Mi".into()))])),
        ..Default::default()
    }
}
