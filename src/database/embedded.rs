//! The embedded provisioner: a one-replica StatefulSet of the engine's image with its own volume.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DATABASE_LABEL, DEFAULT_STORAGE, credentials_secret_name, object_name};
use crate::api::databaseclass::{EmbeddedProvisioner, Engine};
use crate::api::{DatabaseSpec, DeletionPolicy};
use crate::render::deployment::restricted_container;
use crate::render::{Cx, MANAGED_BY_LABEL, MANAGER, NAME_LABEL, selector_labels};

/// The images of all three engines run as this user.
const ENGINE_UID: i64 = 999;

fn pod_labels(cx: &Cx) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), object_name(cx.name)),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (DATABASE_LABEL.to_string(), cx.name.to_string()),
    ])
}

fn db_selector(cx: &Cx) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(DATABASE_LABEL.to_string(), cx.name.to_string())])),
        ..Default::default()
    }
}

fn secret_env(cx: &Cx, name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: credentials_secret_name(cx.name),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the engine keeps its data, the directories it writes besides, its environment and args.
fn engine_setup(cx: &Cx, engine: Engine) -> (&'static str, Vec<&'static str>, Vec<EnvVar>, Option<Vec<String>>) {
    match engine {
        Engine::Postgres => (
            "/var/lib/postgresql/data",
            vec!["/var/run/postgresql"],
            vec![
                secret_env(cx, "POSTGRES_USER", "username"),
                secret_env(cx, "POSTGRES_PASSWORD", "password"),
                secret_env(cx, "POSTGRES_DB", "database"),
                EnvVar {
                    name: "PGDATA".into(),
                    value: Some("/var/lib/postgresql/data/pgdata".into()),
                    ..Default::default()
                },
            ],
            None,
        ),
        Engine::Mysql => (
            "/var/lib/mysql",
            vec!["/var/run/mysqld"],
            vec![
                secret_env(cx, "MYSQL_USER", "username"),
                secret_env(cx, "MYSQL_PASSWORD", "password"),
                secret_env(cx, "MYSQL_DATABASE", "database"),
                EnvVar { name: "MYSQL_RANDOM_ROOT_PASSWORD".into(), value: Some("yes".into()), ..Default::default() },
            ],
            None,
        ),
        Engine::Redis => (
            "/data",
            vec![],
            vec![secret_env(cx, "REDIS_PASSWORD", "password")],
            Some(vec!["--requirepass".into(), "$(REDIS_PASSWORD)".into(), "--appendonly".into(), "yes".into()]),
        ),
    }
}

pub(super) fn stateful_set(cx: &Cx, engine: Engine, e: &EmbeddedProvisioner, db: &DatabaseSpec) -> StatefulSet {
    let (data_path, scratch, env, args) = engine_setup(cx, engine);
    let mut volumes =
        vec![Volume { name: "tmp".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Default::default() }];
    let mut mounts = vec![
        VolumeMount { name: "data".into(), mount_path: data_path.into(), ..Default::default() },
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
    ];
    for (i, dir) in scratch.iter().enumerate() {
        let name = format!("run{i}");
        volumes.push(Volume {
            name: name.clone(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        });
        mounts.push(VolumeMount { name, mount_path: (*dir).into(), ..Default::default() });
    }
    let policy = match db.deletion_policy.unwrap_or_default() {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    let storage = db.storage.clone().unwrap_or_else(|| DEFAULT_STORAGE.into());
    let port = engine.port();
    StatefulSet {
        metadata: cx.meta(&object_name(cx.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(object_name(cx.name)),
            selector: db_selector(cx),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(policy.into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels(cx)), ..Default::default() }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(ENGINE_UID),
                        run_as_group: Some(ENGINE_UID),
                        fs_group: Some(ENGINE_UID),
                        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
                        ..Default::default()
                    }),
                    containers: vec![Container {
                        name: engine.binding_type().into(),
                        image: Some(e.image.clone()),
                        args,
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("db".into()),
                            container_port: port,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
                            period_seconds: Some(5),
                            ..Default::default()
                        }),
                        resources: Some(e.resources.clone().unwrap_or_else(|| ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".into(), Quantity("100m".into())),
                                ("memory".into(), Quantity("256Mi".into())),
                            ])),
                            limits: Some(BTreeMap::from([("memory".into(), Quantity("512Mi".into()))])),
                            ..Default::default()
                        })),
                        security_context: Some(restricted_container()),
                        volume_mounts: Some(mounts),
                        ..Default::default()
                    }],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".into()), labels: Some(cx.labels()), ..Default::default() },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: e.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".into(), Quantity(storage))])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

pub(super) fn headless_service(cx: &Cx, engine: Engine) -> Service {
    Service {
        metadata: cx.meta(&object_name(cx.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: db_selector(cx).match_labels,
            ports: Some(vec![ServicePort {
                name: Some("db".into()),
                port: engine.port(),
                target_port: Some(IntOrString::String("db".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Only the owning service's pods may reach the database; the database reaches nothing.
pub(super) fn network_policy(cx: &Cx, engine: Engine) -> NetworkPolicy {
    NetworkPolicy {
        metadata: cx.meta(&object_name(cx.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(db_selector(cx)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(cx.name)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ports: Some(vec![NetworkPolicyPort {
                    protocol: Some("TCP".into()),
                    port: Some(IntOrString::Int(engine.port())),
                    ..Default::default()
                }]),
            }]),
            egress: Some(vec![]),
        }),
    }
}
