//! Flotilla: one Microservice object becomes everything the service needs in the cluster.

pub mod api;
pub mod manifest;
pub mod render;
pub mod validate;
