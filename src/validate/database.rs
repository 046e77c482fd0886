//! `spec.database`: the class and storage of the service's database, and the env names it sets.

use std::collections::BTreeMap;

use super::names::dns1123_subdomain;
use crate::api::contract::DATABASE_ENV;
use crate::api::defaults::parse_quantity;
use crate::api::{DatabaseSpec, rules};

/// `spec.database`: a class name and a positive storage size.
pub(super) fn database(db: &DatabaseSpec, err: &mut impl FnMut(String, String)) {
    if let Some(class) = &db.class
        && let Some(why) = dns1123_subdomain(class)
    {
        err("spec.database.class".into(), format!("{class:?} {why}"));
    }
    if let Some(storage) = &db.storage {
        match parse_quantity(storage) {
            Some(v) if v > 0.0 => {}
            _ => err("spec.database.storage".into(), format!("{storage:?} {}", rules::STORAGE_POSITIVE)),
        }
    }
}

/// Adds the env names a database sets to `env_names` (each env name with the field that sets
/// it), so that `spec.env` cannot set them too.
pub(super) fn reserve_env_names(env_names: &mut BTreeMap<String, String>) {
    for name in DATABASE_ENV.iter().map(|(n, _)| *n).chain(["SERVICE_BINDING_ROOT"]) {
        env_names.insert(name.to_string(), "spec.database".to_string());
    }
}
