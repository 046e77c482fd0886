//! The CRD types of `flotilla.dev/v1alpha1`: Microservice and DatabaseClass.

pub mod contract;
pub mod databaseclass;
pub mod defaults;
pub mod microservice;
pub mod rules;

pub use databaseclass::{DatabaseClass, DatabaseClassSpec};
pub use microservice::*;

use kube::CustomResourceExt;

/// Both CRDs as one multi-document YAML stream, exactly what `flotilla crd` prints and what
/// `crds/` holds.
pub fn crds_yaml() -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for crd in [Microservice::crd(), DatabaseClass::crd()] {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&crd)?);
    }
    Ok(out)
}
