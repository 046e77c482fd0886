//! The embedded provisioner: a one-replica StatefulSet of the engine's image with its own volume.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecretVolumeSource, Service, ServiceAccount, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{DATABASE_LABEL, credentials_secret_name, object_name};
use crate::api::contract::{MANAGED_BY_LABEL, MANAGER, NAME_LABEL, SELECTOR_LABEL};
use crate::api::databaseclass::{EmbeddedProvisioner, Engine};
use crate::api::defaults::{with_ephemeral_storage, within_ephemeral_limit};
use crate::api::{DatabaseSpec, DeletionPolicy};
use crate::render::deployment::restricted_container;
use crate::render::{Input, selector_labels};

/// The images of all three engines run as this user.
const ENGINE_UID: i64 = 999;

fn pod_labels(input: &Input) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), object_name(input.name)),
        (MANAGED_BY_LABEL.to_string(), MANAGER.to_string()),
        (DATABASE_LABEL.to_string(), input.name.to_string()),
    ])
}

fn claim_labels(input: &Input) -> BTreeMap<String, String> {
    let mut labels = pod_labels(input);
    labels.insert(SELECTOR_LABEL.to_string(), input.name.to_string());
    labels
}

fn db_selector(input: &Input) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(DATABASE_LABEL.to_string(), input.name.to_string())])),
        ..Default::default()
    }
}

fn secret_env(input: &Input, name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: credentials_secret_name(input.name),
                key: key.into(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Where the credentials Secret is mounted in the database's container.
pub const CREDENTIALS_DIR: &str = "/run/secrets/flotilla-db";

fn plain_env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

/// What one engine needs: where it keeps its data, the directories it writes besides, its
/// environment and arguments, and the commands that tell it is ready and that it is alive.
struct Setup {
    data_path: &'static str,
    scratch: Vec<&'static str>,
    env: Vec<EnvVar>,
    args: Option<Vec<String>>,
    /// Answers queries: the database may receive traffic.
    ready: Vec<String>,
    /// Answers at all (starting up or recovering counts), within a longer time: it need not
    /// be restarted.
    alive: Vec<String>,
}

fn strings(xs: &[&str]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// The engines read their password from a file (`*_PASSWORD_FILE`) rather than from an
/// environment variable, which every process of the container could read; Redis has no such
/// variable and gets it as an argument.
fn engine_setup(input: &Input, engine: Engine) -> Setup {
    let password_file = format!("{CREDENTIALS_DIR}/password");
    match engine {
        Engine::Postgres => Setup {
            data_path: "/var/lib/postgresql/data",
            scratch: vec!["/var/run/postgresql"],
            env: vec![
                secret_env(input, "POSTGRES_USER", "username"),
                plain_env("POSTGRES_PASSWORD_FILE", &password_file),
                secret_env(input, "POSTGRES_DB", "database"),
                plain_env("PGDATA", "/var/lib/postgresql/data/pgdata"),
                // pg_isready connects as this user to this database (over 127.0.0.1, which the
                // image trusts), so the checks log no failed connection.
                secret_env(input, "PGUSER", "username"),
                secret_env(input, "PGDATABASE", "database"),
            ],
            args: None,
            ready: strings(&["pg_isready", "--quiet", "--host=127.0.0.1", "--timeout=2"]),
            // 0: accepting connections, 1: rejecting them (starting up, recovering): alive.
            alive: strings(&["sh", "-c", "pg_isready --quiet --host=127.0.0.1 --timeout=5; [ $? -le 1 ]"]),
        },
        Engine::Mysql => Setup {
            data_path: "/var/lib/mysql",
            scratch: vec!["/var/run/mysqld"],
            env: vec![
                secret_env(input, "MYSQL_USER", "username"),
                plain_env("MYSQL_PASSWORD_FILE", &password_file),
                secret_env(input, "MYSQL_DATABASE", "database"),
                plain_env("MYSQL_RANDOM_ROOT_PASSWORD", "yes"),
            ],
            args: None,
            // `mysqladmin ping` succeeds whenever the server answers, even "access denied".
            ready: strings(&["mysqladmin", "ping", "--silent", "--host=127.0.0.1", "--connect-timeout=2"]),
            alive: strings(&["mysqladmin", "ping", "--silent", "--host=127.0.0.1", "--connect-timeout=5"]),
        },
        Engine::Redis => Setup {
            data_path: "/data",
            scratch: vec![],
            env: vec![
                secret_env(input, "REDIS_PASSWORD", "password"),
                // redis-cli authenticates with this variable, so the checks need no argument.
                secret_env(input, "REDISCLI_AUTH", "password"),
            ],
            args: Some(strings(&["--requirepass", "$(REDIS_PASSWORD)", "--appendonly", "yes"])),
            ready: strings(&["sh", "-c", "[ \"$(redis-cli -h 127.0.0.1 ping)\" = PONG ]"]),
            // Any reply (LOADING while it reads its data, too) means alive.
            alive: strings(&["sh", "-c", "redis-cli -h 127.0.0.1 ping | grep -q ."]),
        },
    }
}

/// Ephemeral-storage request and limit of a database container, unless its class names them.
pub const DATABASE_EPHEMERAL_STORAGE: (&str, &str) = ("256Mi", "2Gi");
/// Size limit of the database's `/tmp` (MySQL writes large temporary tables there).
pub const DATABASE_TMP_SIZE_LIMIT: &str = "1Gi";
/// Size limit of the database's run directories (a socket, a lock and a pid file).
pub const DATABASE_RUN_SIZE_LIMIT: &str = "64Mi";

/// The database's own ServiceAccount: it calls no Kubernetes API, so it gets no token.
pub(super) fn service_account(input: &Input) -> ServiceAccount {
    ServiceAccount {
        metadata: input.meta(&object_name(input.name)),
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

fn empty_dir(name: &str, size: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource { size_limit: Some(Quantity(size.into())), ..Default::default() }),
        ..Default::default()
    }
}

fn exec_probe(command: Vec<String>, period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: Some(command) }),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

pub(super) fn stateful_set(input: &Input, engine: Engine, e: &EmbeddedProvisioner, db: &DatabaseSpec) -> StatefulSet {
    let setup = engine_setup(input, engine);
    let resources = with_ephemeral_storage(
        e.resources.clone().unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("256Mi".into())),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), Quantity("512Mi".into()))])),
            ..Default::default()
        }),
        DATABASE_EPHEMERAL_STORAGE,
    );
    let mut volumes = vec![
        empty_dir("tmp", within_ephemeral_limit(DATABASE_TMP_SIZE_LIMIT, &resources)),
        Volume {
            name: "credentials".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(credentials_secret_name(input.name)),
                // Owned by root, readable by the engine's group (fsGroup) only.
                default_mode: Some(0o440),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount { name: "data".into(), mount_path: setup.data_path.into(), ..Default::default() },
        VolumeMount { name: "tmp".into(), mount_path: "/tmp".into(), ..Default::default() },
        VolumeMount {
            name: "credentials".into(),
            mount_path: CREDENTIALS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    for (i, dir) in setup.scratch.iter().enumerate() {
        let name = format!("run{i}");
        volumes.push(empty_dir(&name, DATABASE_RUN_SIZE_LIMIT));
        mounts.push(VolumeMount { name, mount_path: (*dir).into(), ..Default::default() });
    }
    let policy = match db.deletion_policy() {
        DeletionPolicy::Retain => "Retain",
        DeletionPolicy::Delete => "Delete",
    };
    let storage = db.storage().to_string();
    let port = engine.port();
    StatefulSet {
        metadata: input.meta(&object_name(input.name)),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(object_name(input.name)),
            selector: db_selector(input),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(policy.into()),
                when_scaled: Some("Retain".into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels(input)), ..Default::default() }),
                spec: Some(PodSpec {
                    service_account_name: Some(object_name(input.name)),
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
                        args: setup.args,
                        env: Some(setup.env),
                        ports: Some(vec![ContainerPort {
                            name: Some("db".into()),
                            container_port: port,
                            protocol: Some("TCP".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(exec_probe(setup.ready, 5, 3, 3)),
                        // A database that has not answered for a minute is restarted.
                        liveness_probe: Some(exec_probe(setup.alive, 10, 6, 6)),
                        // Up to 10 minutes to initialise or recover before liveness takes over.
                        startup_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction { port: IntOrString::Int(port), host: None }),
                            period_seconds: Some(5),
                            failure_threshold: Some(120),
                            ..Default::default()
                        }),
                        resources: Some(resources),
                        security_context: Some(restricted_container()),
                        volume_mounts: Some(mounts),
                        ..Default::default()
                    }],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                // The pods' labels, plus the owning service's selector label, which marks the
                // claim as that service's data.
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(claim_labels(input)),
                    ..Default::default()
                },
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

pub(super) fn headless_service(input: &Input, engine: Engine) -> Service {
    Service {
        metadata: input.meta(&object_name(input.name)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: db_selector(input).match_labels,
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
pub(super) fn network_policy(input: &Input, engine: Engine) -> NetworkPolicy {
    NetworkPolicy {
        metadata: input.meta(&object_name(input.name)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(db_selector(input)),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(selector_labels(input.name)),
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
