//! How a remote cluster finds its control plane: the injector webhook (MutatingWebhookConfigurations),
//! the istiod Service and its address, the `controlPlaneClusters` annotation.

use super::objects::{annotation, label, name};
use crate::topology::istio::*;
use crate::topology::model::{RemoteWiring, WebhookHook};
use crate::topology::snapshot::ClusterSnapshot;

/// The URL-based injector webhook of a remote or externally controlled cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Injector {
    pub name: String,
    pub url: String,
    /// Webhooks in the configuration that carry the URL.
    pub hooks: usize,
}

impl Injector {
    fn url_segment(&self, marker: &str) -> Option<String> {
        let rest = self.url.split(marker).nth(1)?;
        Some(rest.split('/').next()?.to_string())
    }

    /// The cluster id in `.../inject/cluster/<id>/net/<network>`.
    pub fn cluster_id(&self) -> Option<String> {
        self.url_segment(INJECT_URL_CLUSTER)
    }

    pub fn network(&self) -> Option<String> {
        self.url_segment(INJECT_URL_NETWORK)
    }
}

/// Reads MutatingWebhookConfigurations only.
pub(super) fn injector(s: &ClusterSnapshot) -> Option<Injector> {
    s.webhooks
        .values()
        .filter(|w| is_revisioned(&name(&w.metadata), INJECTOR_WEBHOOK))
        .find_map(|w| {
            let hooks = w.webhooks.as_ref()?;
            let url = hooks.iter().find_map(|h| h.client_config.url.clone())?;
            let count = hooks
                .iter()
                .take_while(|h| h.client_config.url.is_some())
                .count();
            Some(Injector {
                name: name(&w.metadata),
                url,
                hooks: count,
            })
        })
}

/// Every webhook, in every MutatingWebhookConfiguration, that calls an injector by URL.
pub(super) fn injection_hooks(s: &ClusterSnapshot) -> Vec<WebhookHook> {
    let mut hooks = Vec::new();
    for w in s.webhooks.values() {
        for (index, h) in w.webhooks.iter().flatten().enumerate() {
            if let Some(url) = h
                .client_config
                .url
                .as_ref()
                .filter(|u| u.contains(INJECT_PATH))
            {
                hooks.push(WebhookHook {
                    configuration: name(&w.metadata),
                    index,
                    url: url.clone(),
                });
            }
        }
    }
    hooks
}

/// `scheme://host:port` of the injector that serves `revision` in this cluster, when the
/// cluster's own webhook calls it by URL.
pub(super) fn injector_endpoint(s: &ClusterSnapshot, revision: &str) -> Option<String> {
    let wanted = if revision == DEFAULT_REVISION {
        INJECTOR_WEBHOOK.to_string()
    } else {
        format!("{INJECTOR_WEBHOOK}-{revision}")
    };
    let w = s.webhooks.values().find(|w| name(&w.metadata) == wanted)?;
    let url = w
        .webhooks
        .iter()
        .flatten()
        .find_map(|h| h.client_config.url.clone())?;
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(format!("{scheme}://{authority}"))
}

/// The `controlPlaneClusters` annotation of the system namespace, when it is set.
pub(super) fn control_plane_clusters(s: &ClusterSnapshot) -> Option<Vec<String>> {
    let system_ns = s
        .namespaces
        .get(&(String::new(), SYSTEM_NAMESPACE.to_string()))?;
    annotation(&system_ns.metadata, ANNOTATION_CONTROL_PLANE_CLUSTERS).map(|v| {
        v.split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    })
}

/// Reads namespaces, Services and the system namespace's EndpointSlices.
pub(super) fn remote_wiring(s: &ClusterSnapshot, injector: Option<&Injector>) -> RemoteWiring {
    let istiod = s
        .services
        .range((SYSTEM_NAMESPACE.to_string(), String::new())..)
        .take_while(|((ns, _), _)| ns == SYSTEM_NAMESPACE)
        .find(|((_, n), _)| is_revisioned(n, ISTIOD))
        .map(|((_, n), svc)| (n.clone(), svc));
    let mut istiod_slice = None;
    let (istiod_service, istiod_address, address_kind) = match istiod {
        Some((svc_name, svc)) => {
            let spec = svc.spec.clone().unwrap_or_default();
            if spec.type_.as_deref() == Some("ExternalName") {
                (
                    Some(svc_name),
                    spec.external_name,
                    Some("ExternalName".into()),
                )
            } else {
                let slice = s
                    .endpoint_slices
                    .range((SYSTEM_NAMESPACE.to_string(), String::new())..)
                    .take_while(|((ns, _), _)| ns == SYSTEM_NAMESPACE)
                    .map(|(_, sl)| sl)
                    .find(|sl| {
                        sl.metadata.namespace.as_deref() == Some(SYSTEM_NAMESPACE)
                            && label(&sl.metadata, LABEL_SERVICE_NAME) == Some(&svc_name)
                    });
                let addr =
                    slice.and_then(|sl| sl.endpoints.as_ref()?.first()?.addresses.first().cloned());
                istiod_slice = slice.map(|sl| name(&sl.metadata));
                (Some(svc_name), addr, slice.map(|_| "EndpointSlice".into()))
            }
        }
        None => (None, None, None),
    };
    RemoteWiring {
        istiod_service,
        istiod_address,
        address_kind,
        injector_webhook: injector.map(|i| i.name.clone()),
        injector_hooks: injector.map(|i| i.hooks).unwrap_or(0),
        injector_url: injector.map(|i| i.url.clone()),
        hooks: injection_hooks(s),
        istiod_slice,
        control_plane_clusters: control_plane_clusters(s).unwrap_or_default(),
        system_namespace: SYSTEM_NAMESPACE.into(),
    }
}
