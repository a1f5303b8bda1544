//! Objects trimmed at the door: only the fields derivation reads are kept, so memory follows
//! what meshtop shows, not what the API server sends. No Secret value is ever kept.

use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, EnvVar, Namespace, Node, Pod, PodCondition, PodSpec, PodStatus, Secret,
    Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::core::{DynamicObject, PartialObjectMeta};

use crate::topology::snapshot::KubeObject;

/// Annotations derivation reads; every other annotation is dropped.
const KEPT_ANNOTATIONS: &[&str] = &[
    "topology.istio.io/controlPlaneClusters",
    "sidecar.istio.io/status",
    "istio.io/rev",
    "networking.istio.io/gatewayPort",
];

fn meta(mut m: ObjectMeta) -> ObjectMeta {
    m.managed_fields = None;
    // The watcher tracks resource versions itself; kept here, every heartbeat of an object
    // would look like a change.
    m.resource_version = None;
    m.owner_references = None;
    m.finalizers = None;
    if let Some(a) = m.annotations.as_mut() {
        a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
        if a.is_empty() {
            m.annotations = None;
        }
    }
    m
}

/// Keeps a container's name and image, and its env only where derivation reads it (istiod's
/// `CLUSTER_ID`/`EXTERNAL_ISTIOD`, a sidecar's `ISTIO_META_*`); values come from `value` only.
fn container(c: Container, keep_env: bool) -> Container {
    let env = if keep_env {
        c.env.map(|env| {
            env.into_iter()
                .filter(|e| e.value.is_some())
                .map(|e| EnvVar {
                    name: e.name,
                    value: e.value,
                    value_from: None,
                })
                .collect()
        })
    } else {
        None
    };
    Container {
        name: c.name,
        image: c.image,
        env,
        ..Default::default()
    }
}

pub fn namespace(o: PartialObjectMeta<Namespace>) -> KubeObject {
    KubeObject::Namespace(Namespace {
        metadata: meta(o.metadata),
        ..Default::default()
    })
}

pub fn node(o: PartialObjectMeta<Node>) -> KubeObject {
    let mut m = meta(o.metadata);
    m.annotations = None;
    if let Some(l) = m.labels.as_mut() {
        l.retain(|k, _| k.starts_with("topology."));
    }
    KubeObject::Node(Node {
        metadata: m,
        ..Default::default()
    })
}

pub fn pod(o: Pod) -> KubeObject {
    let spec = o.spec.map(|s| PodSpec {
        node_name: s.node_name,
        service_account_name: s.service_account_name,
        containers: s
            .containers
            .into_iter()
            .filter(|c| c.name == "istio-proxy" || c.name == "discovery")
            .map(|c| container(c, true))
            .collect(),
        ..Default::default()
    });
    let status = o.status.map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .filter(|c| c.type_ == "Ready")
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    });
    KubeObject::Pod(Pod {
        metadata: meta(o.metadata),
        spec,
        status,
    })
}

pub fn service(mut o: Service) -> KubeObject {
    o.metadata = meta(o.metadata);
    KubeObject::Service(o)
}

pub fn endpoint_slice(mut o: EndpointSlice) -> KubeObject {
    o.metadata = meta(o.metadata);
    for e in o.endpoints.iter_mut().flatten() {
        e.target_ref = e.target_ref.take().map(|mut r| {
            r.resource_version = None;
            r.uid = None;
            r
        });
        e.hints = None;
    }
    KubeObject::EndpointSlice(o)
}

pub fn deployment(o: Deployment) -> KubeObject {
    let is_istiod = o
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app"))
        .is_some_and(|a| a == "istiod");
    let mut template = o.spec.template;
    template.metadata = template.metadata.map(meta);
    template.spec = template.spec.map(|s| PodSpec {
        containers: s
            .containers
            .into_iter()
            .map(|c| container(c, is_istiod))
            .collect(),
        ..Default::default()
    });
    let spec = DeploymentSpec {
        replicas: o.spec.replicas,
        selector: o.spec.selector,
        template,
        ..Default::default()
    };
    let status = o.status.map(|s| DeploymentStatus {
        replicas: s.replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        updated_replicas: s.updated_replicas,
        ..Default::default()
    });
    KubeObject::Deployment(Deployment {
        metadata: meta(o.metadata),
        spec,
        status,
    })
}

/// Only Istio's own ConfigMaps are kept (`istio[-rev]`, `istio-sidecar-injector[-rev]`,
/// `values[-rev]`, and the root certificate of the system namespace).
pub fn config_map(o: ConfigMap, system_namespace: &str) -> Option<KubeObject> {
    let name = o.metadata.name.as_deref().unwrap_or("");
    let ns = o.metadata.namespace.as_deref().unwrap_or("");
    let istio = name == "istio" || name.starts_with("istio-") || name.starts_with("values");
    if !istio || (name == "istio-ca-root-cert" && ns != system_namespace) {
        return None;
    }
    Some(KubeObject::ConfigMap(ConfigMap {
        metadata: meta(o.metadata),
        data: o.data,
        ..Default::default()
    }))
}

/// A remote secret: its name and data keys (the cluster ids it manages). Every value is
/// replaced by nothing here, before the object goes anywhere else.
pub fn secret(o: Secret) -> KubeObject {
    let data = o
        .data
        .map(|d| d.into_keys().map(|k| (k, ByteString(Vec::new()))).collect());
    KubeObject::Secret(Secret {
        metadata: meta(o.metadata),
        data,
        type_: o.type_,
        ..Default::default()
    })
}

pub fn webhook(mut o: MutatingWebhookConfiguration) -> KubeObject {
    o.metadata = meta(o.metadata);
    for w in o.webhooks.iter_mut().flatten() {
        w.client_config.ca_bundle = None;
    }
    KubeObject::MutatingWebhook(o)
}

pub fn istio(mut o: DynamicObject) -> KubeObject {
    o.metadata = meta(o.metadata);
    if let Some(obj) = o.data.as_object_mut() {
        obj.remove("status");
    }
    KubeObject::Istio(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_keeps_keys_and_drops_every_value() {
        let mut s = Secret::default();
        s.metadata.name = Some("istio-remote-secret-remote".into());
        s.metadata.annotations = Some(
            [(
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{\"data\":{\"remote\":\"dG9rZW4=\"}}".to_string(),
            )]
            .into(),
        );
        s.data = Some([("remote".to_string(), ByteString(b"token: s3cr3t".to_vec()))].into());
        s.string_data = Some([("x".to_string(), "s3cr3t".to_string())].into());
        let KubeObject::Secret(t) = secret(s) else {
            panic!("a secret stays a secret")
        };
        let text = format!("{t:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("dG9rZW4"),
            "{text}"
        );
        assert_eq!(
            t.data.unwrap().keys().cloned().collect::<Vec<_>>(),
            vec!["remote".to_string()]
        );
    }

    #[test]
    fn config_maps_outside_istio_are_dropped() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("kube-root-ca.crt".into());
        cm.metadata.namespace = Some("istio-system".into());
        assert!(config_map(cm.clone(), "istio-system").is_none());
        cm.metadata.name = Some("istio-ca-root-cert".into());
        assert!(config_map(cm.clone(), "istio-system").is_some());
        cm.metadata.namespace = Some("shop".into());
        assert!(config_map(cm.clone(), "istio-system").is_none());
        cm.metadata.name = Some("istio".into());
        cm.metadata.namespace = Some("istio-system".into());
        assert!(config_map(cm, "istio-system").is_some());
    }
}
