//! The `flotilla` command: `crd`, `render`, `run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use flotilla::render::{World, render, to_yaml};

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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match flotilla::api::crds_yaml() {
            Ok(y) => {
                print!("{y}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Render { files, namespace } => render_files(&files, namespace.as_deref()),
    }
}

fn render_files(files: &[PathBuf], namespace: Option<&str>) -> ExitCode {
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
    let world =
        World { microservices: manifests.microservices.iter().cloned().map(Arc::new).collect(), ..World::default() };
    let mut values = Vec::new();
    let mut failed = false;
    for ms in &manifests.microservices {
        match render(ms, &world).map_err(|e| e.to_string()).and_then(|c| c.to_values().map_err(|e| e.to_string())) {
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
    match to_yaml(&values) {
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
