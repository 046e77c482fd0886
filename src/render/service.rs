//! The Service and the ServiceAccount.

use k8s_openapi::api::core::v1::{Service, ServiceAccount, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Input, selector_labels};

pub(super) fn service(input: &Input) -> Service {
    Service {
        metadata: input.meta(input.name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(input.name)),
            ports: Some(
                input
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::String(p.name.clone())),
                        protocol: Some(p.protocol().as_str().into()),
                        app_protocol: p.app_protocol.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

pub(super) fn service_account(input: &Input) -> Option<ServiceAccount> {
    let pod = input.spec.pod.as_ref();
    if pod.is_some_and(|p| p.service_account_name.is_some()) {
        return None;
    }
    Some(ServiceAccount {
        metadata: input.meta(input.name),
        automount_service_account_token: Some(input.spec.automount_token()),
        ..Default::default()
    })
}
