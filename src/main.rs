//! The `flotilla` command: `crd`, `render`, `run`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use std::time::Duration;

use flotilla::controller::{LeaderElection, RunConfig};
use flotilla::policy::Policy;
use flotilla::render::{Settings, preview, to_yaml};

#[derive(Parser)]
#[command(name = "flotilla", version, about = "One Microservice object becomes everything the service needs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions (Microservice, DatabaseClass) as YAML.
    Crd,
    /// Print, offline, every child object the Microservices in the given files become.
    Render {
        /// Files or directories of YAML manifests; the Microservices in them are the world, so a
        /// callee's ingress rules reflect its callers in the same files.
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<PathBuf>,
        /// Namespace for objects that name none (default: `default`).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The platform policy file the operator runs with (its defaults when absent).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
    /// Run the operator (in-cluster, or with KUBECONFIG).
    Run(RunArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Watch only these namespaces, comma-separated or the flag repeated (default: all
    /// namespaces). The operator then needs rights in these namespaces only.
    #[arg(long, env = "FLOTILLA_NAMESPACE", value_delimiter = ',', value_parser = namespace_name)]
    namespace: Vec<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLOTILLA_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Log format.
    #[arg(long, env = "FLOTILLA_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: flotilla::telemetry::LogFormat,
    /// Microservices reconciled at the same time.
    #[arg(long, env = "FLOTILLA_CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// How long one reconcile may take before it is given up and tried again later (a slow or
    /// stalled API server would otherwise hold a worker for minutes).
    #[arg(long, env = "FLOTILLA_RECONCILE_TIMEOUT_SECONDS", default_value_t = 60)]
    reconcile_timeout_seconds: u64,
    /// Elect a leader on a Lease, so that several replicas never act at once.
    #[arg(long, env = "FLOTILLA_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease (default: the pod's namespace, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "flotilla-system")]
    leader_elect_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "FLOTILLA_LEADER_ELECT_LEASE", default_value = "flotilla-leader")]
    leader_elect_lease: String,
    /// Seconds a leader's lease lasts without renewal.
    #[arg(long, env = "FLOTILLA_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity in the Lease (default: POD_NAME, or the host name plus a random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Namespace of the ingress controller, admitted to services with expose.ingress.
    #[arg(long, env = "FLOTILLA_INGRESS_NAMESPACE", default_value = "ingress-nginx")]
    ingress_namespace: String,
    /// Address of a NodeLocal DNSCache, allowed as DNS egress when set (e.g. 169.254.20.10).
    #[arg(long, env = "FLOTILLA_NODE_LOCAL_DNS")]
    node_local_dns: Option<std::net::IpAddr>,
    /// Cluster DNS domain used in service URLs.
    #[arg(long, env = "FLOTILLA_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The platform policy (YAML): what tenants may set, and which namespaces are one tenant.
    /// Its safe defaults when absent; a file that cannot be used stops the operator at start.
    #[arg(long, env = "FLOTILLA_POLICY")]
    policy: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print_yaml(flotilla::api::crds_yaml()),
        Command::Render { files, namespace, policy } => render_files(&files, namespace.as_deref(), policy.as_deref()),
        Command::Run(args) => run(args),
    }
}

fn run(args: RunArgs) -> ExitCode {
    flotilla::telemetry::init(args.log_format);
    let identity = args.identity.unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        format!("{}-{:06x}", if host.is_empty() { "flotilla" } else { &host }, rand::random::<u32>() & 0xff_ffff)
    });
    let policy = match load_policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let settings = Settings {
        policy,
        cluster_domain: args.cluster_domain,
        ingress_namespace: args.ingress_namespace,
        node_local_dns: args.node_local_dns.map(|ip| ip.to_string()),
        ..Settings::default()
    };
    let config = RunConfig {
        scope: flotilla::controller::Scope::new(args.namespace),
        metrics_addr: args.metrics_addr,
        concurrency: args.concurrency.max(1),
        reconcile_timeout: Duration::from_secs(args.reconcile_timeout_seconds.max(1)),
        leader_election: args.leader_elect.then(|| LeaderElection {
            namespace: args.leader_elect_namespace,
            lease_name: args.leader_elect_lease,
            identity,
            lease_duration: Duration::from_secs(args.lease_seconds.max(3)),
        }),
        settings,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(flotilla::controller::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "operator stopped");
            ExitCode::FAILURE
        }
    }
}

/// The policy at `path`, or the defaults; a file that cannot be used is an error naming its entry.
fn load_policy(path: Option<&std::path::Path>) -> Result<std::sync::Arc<Policy>, ExitCode> {
    match path.map(Policy::load).transpose() {
        Ok(p) => Ok(std::sync::Arc::new(p.unwrap_or_default())),
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn render_files(files: &[PathBuf], namespace: Option<&str>, policy: Option<&std::path::Path>) -> ExitCode {
    let policy = match load_policy(policy) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let manifests = match flotilla::manifest::load(files, namespace) {
        Ok(m) => m,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    for s in &manifests.skipped {
        eprintln!("skipped (not a Flotilla object): {s}");
    }
    let mut world = manifests.world();
    world.settings.policy = policy;
    let mut values = Vec::new();
    let mut failed = false;
    for ms in &manifests.microservices {
        if ms.spec.database.is_some()
            && let Some(Err((_, why))) = flotilla::render::Input::new(ms, &world).class
        {
            eprintln!(
                "warning: {}/{}: spec.database: {why} among the files given: its database and the Secret its \
                 Deployment reads are not rendered (the operator takes the class from the cluster)",
                ms.ns(),
                ms.metadata.name.as_deref().unwrap_or_default()
            );
        }
        match preview(ms, &world) {
            Ok(v) => values.extend(v),
            Err(e) => {
                eprintln!("error: {}: {e}", ms.metadata.name.as_deref().unwrap_or_default());
                failed = true;
            }
        }
    }
    if failed {
        return ExitCode::from(2);
    }
    print_yaml(to_yaml(&values))
}

fn print_yaml(yaml: Result<String, serde_yaml_ng::Error>) -> ExitCode {
    match yaml {
        Ok(y) => {
            print!("{y}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A namespace name as `--namespace` takes it: a DNS label (RFC 1123).
fn namespace_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a namespace name (lowercase letters, digits and '-', at most 63, no '-' at either end)"
        ))
    }
}
