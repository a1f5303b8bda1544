//! istiod probes: which istiod each proxy dials, and what /debug and /metrics answer.

use super::*;

impl DemoSim {
    /// Which istiod a cluster's proxies dial: the address of its istiod Service (remotes), or
    /// the revision of their namespace (primaries).
    pub(super) fn serving(
        &self,
        context: &str,
        namespace: Option<&str>,
    ) -> Option<(String, String)> {
        let snapshot = self.world.clusters.iter().find(|c| c.context == context)?;
        let own = self
            .control_planes
            .iter()
            .filter(|cp| cp.context == context && cp.namespace == SYSTEM_NAMESPACE)
            .collect::<Vec<_>>();
        if own.is_empty() {
            let svc = snapshot
                .services
                .get(&(SYSTEM_NAMESPACE.to_string(), "istiod".to_string()))?;
            let host = svc.spec.as_ref()?.external_name.clone()?;
            return self.exposed.get(&host).cloned();
        }
        let revision = namespace
            .and_then(|ns| snapshot.namespaces.get(&(String::new(), ns.to_string())))
            .and_then(|ns| {
                let labels = ns.metadata.labels.as_ref()?;
                if labels.get(LABEL_INJECTION).map(String::as_str) == Some("enabled") {
                    Some("default".to_string())
                } else {
                    labels.get(LABEL_REV).cloned()
                }
            })
            .unwrap_or_else(|| "default".into());
        own.iter()
            .find(|cp| cp.revision == revision)
            .or(own.first())
            .map(|cp| (context.to_string(), format!("{}/{}", cp.namespace, cp.name)))
    }

    pub(super) fn cp_ready(&self, cp: &SimControlPlane) -> bool {
        let phase = self.tick % 180;
        let down = self.incidents
            && cp.context == "east-1"
            && cp.namespace == SYSTEM_NAMESPACE
            && ((cp.name == "istiod-canary" && (100..120).contains(&phase))
                || (cp.name == "istiod" && (140..165).contains(&phase)));
        !down
    }

    /// Probes every istiod: /ready, /version, /debug/clusterz, /debug/syncz, /metrics.
    pub(super) fn probe_all(&mut self) {
        // Proxies: every injected pod and gateway pod, attributed to the istiod it dials.
        let mut rows: BTreeMap<(String, String), Vec<SynczEntry>> = BTreeMap::new();
        for snapshot in &self.world.clusters {
            let c = self.cluster(&snapshot.context);
            for ((ns, pod_name), pod) in &snapshot.pods {
                let has_proxy = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().any(|c| c.name == PROXY_CONTAINER))
                    .unwrap_or(false);
                if !has_proxy {
                    continue;
                }
                if let Some(key) = self.serving(&snapshot.context, Some(ns)) {
                    rows.entry(key).or_default().push(SynczEntry {
                        proxy: format!("{pod_name}.{ns}"),
                        cluster_id: c.cluster_id.clone(),
                        istio_version: String::new(),
                    });
                }
            }
        }
        let at_secs = self.tick as f64;
        let cps = self.control_planes.clone();
        for (i, cp) in cps.iter().enumerate() {
            let key = (cp.context.clone(), format!("{}/{}", cp.namespace, cp.name));
            let mut syncz = rows.remove(&key).unwrap_or_default();
            for row in &mut syncz {
                row.istio_version = cp.version.clone();
            }
            let ready = self.cp_ready(cp);
            let mut clusterz = vec![ClusterzEntry {
                id: cp.cluster_id.clone(),
                secret_name: String::new(),
                sync_status: "synced".into(),
            }];
            if let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == cp.context) {
                for ((ns, secret_name), secret) in &snapshot.secrets {
                    if ns != &cp.namespace
                        || secret
                            .metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get(LABEL_MULTICLUSTER))
                            != Some(&"true".to_string())
                    {
                        continue;
                    }
                    for id in secret.data.iter().flat_map(|d| d.keys()) {
                        clusterz.push(ClusterzEntry {
                            id: id.clone(),
                            secret_name: secret_name.clone(),
                            sync_status: "synced".into(),
                        });
                    }
                }
            }
            let pushes = 5 + self.rng.below(40) + syncz.len() as u64 / 4;
            let sim_cp = &mut self.control_planes[i];
            sim_cp.pushes += pushes as f64;
            sim_cp.convergence_count += pushes as f64;
            sim_cp.convergence_sum += pushes as f64 * (0.004 + (cp.replicas as f64) * 0.001);
            let probe = IstiodProbe {
                at_secs,
                ready: Some(ready),
                version: Some(cp.version.clone()),
                clusterz: Some(clusterz),
                metrics: Some(IstiodMetrics {
                    xds_clients: syncz.len() as f64,
                    pushes: sim_cp.pushes,
                    convergence_sum: sim_cp.convergence_sum,
                    convergence_count: sim_cp.convergence_count,
                    xds_rejects: 0.0,
                }),
                syncz: Some(syncz),
                error: None,
            };
            let update = Update::IstiodProbe {
                context: cp.context.clone(),
                control_plane: format!("{}/{}", cp.namespace, cp.name),
                probe,
            };
            self.world.apply(update.clone(), SystemTime::now());
            self.pending.push(update);
        }
    }
}
