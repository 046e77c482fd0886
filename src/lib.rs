//! Flotilla: one Microservice object becomes everything the service needs in the cluster.

pub mod api;
pub mod controller;
pub mod hash;
pub mod manifest;
pub mod metrics;
pub mod policy;
pub mod render;
pub mod server;
pub mod telemetry;
pub mod validate;
