//! Mesh-wide settings read from ConfigMaps `istio[-<rev>]` (keys `mesh`, `meshNetworks`),
//! `istio-sidecar-injector[-<rev>]` (key `values`) and `istio-ca-root-cert`. Reads ConfigMaps
//! only.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::objects::fingerprint;
use crate::topology::istio::*;
use crate::topology::model::Severity;
use crate::topology::snapshot::ClusterSnapshot;

/// What one cluster's ConfigMaps say about the mesh.
#[derive(Clone, Debug, Default)]
pub(super) struct MeshSettings {
    pub trust_domain: Option<String>,
    pub mesh_id: Option<String>,
    /// `serviceSettings` hosts marked clusterLocal (plus the built-ins).
    pub cluster_local_hosts: Vec<String>,
    /// `meshNetworks`: network → cluster ids listed `fromRegistry`.
    pub mesh_networks: BTreeMap<String, Vec<String>>,
    /// The trust domain of the mesh config in each namespace (one per control plane).
    pub trust_domain_by_namespace: HashMap<String, String>,
    pub root_cert: Option<String>,
    /// The PEM bundle of `istio-ca-root-cert` (certificates only; public).
    pub root_bundle: Option<String>,
    /// `trustDomainAliases` of the default revision's mesh config.
    pub trust_domain_aliases: Vec<String>,
    /// `caCertificates` of the default revision's mesh config.
    pub ca_certificates: Vec<CaCertificate>,
    pub problems: Vec<(Severity, String)>,
}

/// Settings read from the `mesh` key of ConfigMap `istio[-<rev>]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeshConfig {
    trust_domain: Option<String>,
    #[serde(default)]
    trust_domain_aliases: Vec<String>,
    #[serde(default)]
    ca_certificates: Vec<CaCertificate>,
    default_config: Option<ProxyConfig>,
    #[serde(default)]
    service_settings: Vec<ServiceSetting>,
}

/// One `caCertificates[]` entry of the mesh config.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CaCertificate {
    pub pem: Option<String>,
    pub spiffe_bundle_url: Option<String>,
    #[serde(default)]
    pub trust_domains: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProxyConfig {
    mesh_id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSetting {
    #[serde(default)]
    settings: ServiceSettingFlags,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSettingFlags {
    #[serde(default)]
    cluster_local: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct MeshNetworks {
    #[serde(default)]
    networks: BTreeMap<String, MeshNetwork>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct MeshNetwork {
    #[serde(default)]
    endpoints: Vec<MeshNetworkEndpoint>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MeshNetworkEndpoint {
    from_registry: Option<String>,
}

thread_local! {
    /// Parsed mesh configs by their text: the same ConfigMap is not re-parsed on every
    /// endpoint change. A memo of a pure function, so derivation stays pure.
    static MESH_CONFIGS: RefCell<HashMap<String, Result<MeshConfig, String>>> = RefCell::new(HashMap::new());
    static MESH_NETWORKS: RefCell<HashMap<String, Result<MeshNetworks, String>>> = RefCell::new(HashMap::new());
}

/// Parses YAML through a per-thread memo keyed by the text.
fn memo_parse<T: Clone + serde::de::DeserializeOwned>(
    memo: &'static std::thread::LocalKey<RefCell<HashMap<String, Result<T, String>>>>,
    text: &str,
) -> Result<T, String> {
    memo.with(|memo| {
        let mut memo = memo.borrow_mut();
        if let Some(parsed) = memo.get(text) {
            return parsed.clone();
        }
        let parsed = serde_yaml::from_str::<T>(text).map_err(|e| e.to_string());
        if memo.len() > 64 {
            memo.clear();
        }
        memo.insert(text.to_string(), parsed.clone());
        parsed
    })
}

fn parse_mesh_networks(text: &str) -> Result<MeshNetworks, String> {
    memo_parse(&MESH_NETWORKS, text)
}

fn parse_mesh_config(text: &str) -> Result<MeshConfig, String> {
    memo_parse(&MESH_CONFIGS, text)
}

/// Reads the mesh settings of one cluster.
pub(super) fn mesh_settings(s: &ClusterSnapshot) -> MeshSettings {
    let mut problems = Vec::new();
    // Mesh-wide settings from ConfigMap istio (any revision); the default revision wins.
    let mut trust_domain = None;
    let mut mesh_id = None;
    let mut trust_domain_aliases = Vec::new();
    let mut ca_certificates = Vec::new();
    let mut cluster_local_hosts: Vec<String> = vec![
        "*.kube-system.svc.cluster.local".into(),
        "kubernetes.default.svc.cluster.local".into(),
    ];
    let mut mesh_networks = BTreeMap::new();
    let mut mesh_config_by_ns: HashMap<String, String> = HashMap::new();
    for ((ns, cm_name), cm) in &s.config_maps {
        if !is_revisioned(cm_name, CONFIGMAP_MESH) {
            continue;
        }
        let Some(data) = cm.data.as_ref() else {
            continue;
        };
        if cm_name == CONFIGMAP_MESH || data.contains_key(KEY_MESH) {
            if let Some(text) = data.get(KEY_MESH) {
                match parse_mesh_config(text) {
                    Ok(mc) => {
                        let td = mc.trust_domain.unwrap_or_else(|| DEFAULT_TRUST_DOMAIN.into());
                        if cm_name == CONFIGMAP_MESH || trust_domain.is_none() {
                            trust_domain = Some(td.clone());
                            trust_domain_aliases = mc.trust_domain_aliases.clone();
                            ca_certificates = mc.ca_certificates.clone();
                        }
                        mesh_config_by_ns.entry(ns.clone()).or_insert(td);
                        if let Some(id) = mc.default_config.and_then(|d| d.mesh_id) {
                            if cm_name == CONFIGMAP_MESH || mesh_id.is_none() {
                                mesh_id = Some(id);
                            }
                        }
                        for setting in mc.service_settings {
                            if setting.settings.cluster_local {
                                cluster_local_hosts.extend(setting.hosts);
                            }
                        }
                    }
                    Err(e) => problems.push((
                        Severity::Error,
                        format!(
                            "ConfigMap {ns}/{cm_name}: key `{KEY_MESH}` is not valid mesh config: {e}"
                        ),
                    )),
                }
            }
            if let Some(text) = data.get(KEY_MESH_NETWORKS) {
                match parse_mesh_networks(text) {
                    Ok(mn) => {
                        for (net, n) in mn.networks {
                            let ids = n.endpoints.into_iter().filter_map(|e| e.from_registry);
                            mesh_networks
                                .entry(net)
                                .or_insert_with(Vec::new)
                                .extend(ids);
                        }
                    }
                    Err(e) => problems.push((
                        Severity::Error,
                        format!(
                            "ConfigMap {ns}/{cm_name}: key `{KEY_MESH_NETWORKS}` is malformed: {e}"
                        ),
                    )),
                }
            }
        }
        if mesh_id.is_none() && cm_name.starts_with(CONFIGMAP_INJECTOR) {
            if let Some(values) = data.get(KEY_VALUES) {
                match serde_json::from_str::<serde_json::Value>(values) {
                    Ok(v) => {
                        mesh_id = v["global"]["meshID"].as_str().map(str::to_string);
                    }
                    Err(e) => problems.push((
                        Severity::Warning,
                        format!("ConfigMap {ns}/{cm_name}: key `{KEY_VALUES}` is not JSON: {e}"),
                    )),
                }
            }
        }
    }
    let root_bundle = s
        .config_maps
        .get(&(
            SYSTEM_NAMESPACE.to_string(),
            CONFIGMAP_ROOT_CERT.to_string(),
        ))
        .and_then(|cm| cm.data.as_ref()?.get(KEY_ROOT_CERT).cloned());
    let root_cert = root_bundle.as_ref().map(|pem| fingerprint(pem.as_bytes()));
    MeshSettings {
        trust_domain,
        mesh_id,
        cluster_local_hosts,
        mesh_networks,
        trust_domain_by_namespace: mesh_config_by_ns,
        root_cert,
        root_bundle,
        trust_domain_aliases,
        ca_certificates,
        problems,
    }
}

/// Whether `<name>.<ns>.svc.<domain>` matches a host pattern, for any of `domains`, without
/// building the host string.
pub(super) fn host_pattern_matches(pattern: &str, name: &str, ns: &str, domains: &[&str]) -> bool {
    domains.iter().any(|domain| {
        let parts = [name, ".", ns, ".svc.", domain];
        match pattern.strip_prefix('*') {
            // Suffix match: compare from the end, part by part.
            Some(suffix) => {
                let total: usize = parts.iter().map(|p| p.len()).sum();
                if suffix.len() > total {
                    return false;
                }
                let mut rest = suffix;
                for part in parts.iter().rev() {
                    if rest.is_empty() {
                        return true;
                    }
                    let take = part.len().min(rest.len());
                    if !part.ends_with(&rest[rest.len() - take..]) {
                        return false;
                    }
                    rest = &rest[..rest.len() - take];
                }
                rest.is_empty()
            }
            None => {
                let mut rest = pattern;
                for part in parts {
                    match rest.strip_prefix(part) {
                        Some(r) => rest = r,
                        None => return false,
                    }
                }
                rest.is_empty()
            }
        }
    })
}

#[cfg(test)]
mod host_tests {
    use super::host_pattern_matches;

    /// The plain reading of `*.kube-system.svc.cluster.local` style patterns.
    fn host_matches(pattern: &str, host: &str) -> bool {
        match pattern.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix),
            None => pattern == host,
        }
    }

    #[test]
    fn structured_host_match_agrees_with_the_string_match() {
        let patterns = [
            "*.kube-system.svc.cluster.local",
            "kubernetes.default.svc.cluster.local",
            "*.svc.cluster.local",
            "*cache.internal.svc.cluster.local",
            "cache.internal.svc.example.org",
            "*",
            "*.local",
            "*x",
        ];
        let services = [
            ("cache", "internal"),
            ("kubernetes", "default"),
            ("dns", "kube-system"),
            ("api", "payments"),
        ];
        for p in patterns {
            for (name, ns) in services {
                for domains in [
                    ["cluster.local", "cluster.local"],
                    ["example.org", "cluster.local"],
                ] {
                    let expected = domains
                        .iter()
                        .any(|d| host_matches(p, &format!("{name}.{ns}.svc.{d}")));
                    assert_eq!(
                        host_pattern_matches(p, name, ns, &domains),
                        expected,
                        "{p} {name}.{ns} {domains:?}"
                    );
                }
            }
        }
    }
}
