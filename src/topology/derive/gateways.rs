//! Gateways: Services labelled `istio=*gateway`, their pods and their probes. Reads Services,
//! pods and gateway probes.

use k8s_openapi::api::core::v1::Pod;

use super::objects::{label, pod_ready};
use crate::topology::health;
use crate::topology::istio::*;
use crate::topology::model::{Gateway, GatewayKind, Health};
use crate::topology::snapshot::ClusterSnapshot;

/// `network` is the cluster's, for gateways without a network label of their own.
pub(super) fn gateways(s: &ClusterSnapshot, network: Option<&str>) -> Vec<Gateway> {
    let mut gateways = Vec::new();
    for ((ns, svc_name), svc) in &s.services {
        let istio_label = label(&svc.metadata, LABEL_ISTIO).unwrap_or("");
        let kind = if istio_label.contains("eastwest") {
            GatewayKind::EastWest
        } else if istio_label.contains("ingress") {
            GatewayKind::Ingress
        } else if istio_label.contains("egress") {
            GatewayKind::Egress
        } else {
            continue;
        };
        let spec = svc.spec.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        let pods: Vec<&Pod> = if selector.is_empty() {
            Vec::new()
        } else {
            s.pods
                .range((ns.clone(), String::new())..)
                .take_while(|((pns, _), _)| pns == ns)
                .map(|(_, p)| p)
                .filter(|p| {
                    let labels = p.metadata.labels.as_ref();
                    selector
                        .iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                })
                .collect()
        };
        let ready_pods = pods.iter().filter(|p| pod_ready(p)).count() as u32;
        let address = svc
            .status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|ing| ing.iter().find_map(|i| i.ip.clone().or(i.hostname.clone())))
            .or_else(|| {
                spec.external_ips
                    .as_ref()
                    .and_then(|ips| ips.first().cloned())
            });
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        let probe = s
            .gateway_probes
            .get(&format!("{ns}/{svc_name}"))
            .map(|p| p.ready);
        let exposes_istiod =
            ports.contains(&PORT_ISTIOD_XDS) && ports.contains(&PORT_ISTIOD_WEBHOOK);
        let gw_network = label(&svc.metadata, LABEL_NETWORK)
            .or(network)
            .unwrap_or_default()
            .to_string();
        let mut gw = Gateway {
            id: format!("{}/{ns}/{svc_name}", s.context),
            name: svc_name.clone(),
            namespace: ns.clone(),
            cluster: s.context.clone(),
            kind,
            network: gw_network,
            ready_pods,
            pods: pods.len() as u32,
            address,
            ports,
            probe,
            exposes_istiod,
            healthy: false,
            health: Health::Unknown,
        };
        health::gateway(&mut gw);
        gateways.push(gw);
    }
    gateways
}
