//! The Ingress, present only with `spec.expose.ingress`.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend, IngressSpec,
    IngressTLS, ServiceBackendPort,
};

use super::Input;

pub(super) fn ingress(input: &Input) -> Option<Ingress> {
    let ing = input.spec.expose.as_ref()?.ingress.as_ref()?;
    let port = input.ingress_port()?.name.clone();
    Some(Ingress {
        metadata: input.meta(input.name),
        spec: Some(IngressSpec {
            ingress_class_name: input.world.settings.policy.ingress_class(ing.class_name.as_deref()),
            rules: Some(vec![IngressRule {
                host: Some(ing.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(ing.path.clone().unwrap_or_else(|| "/".into())),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: input.name.into(),
                                port: Some(ServiceBackendPort { name: Some(port), number: None }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            tls: ing
                .tls_secret
                .as_ref()
                .map(|s| vec![IngressTLS { hosts: Some(vec![ing.host.clone()]), secret_name: Some(s.clone()) }]),
            ..Default::default()
        }),
        status: None,
    })
}
