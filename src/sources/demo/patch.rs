//! Failover writes: JSON patches applied the way the API server would.

use super::*;

impl DemoSim {
    /// Applies one failover change to the simulated clusters, exactly as the API server would
    /// apply the change's JSON patch (including its `test` of the old value).
    pub fn write(&mut self, change: &Change) -> Result<Vec<Update>, String> {
        let snapshot = self
            .world
            .clusters
            .iter()
            .find(|c| c.context == change.cluster)
            .ok_or_else(|| format!("no cluster {}", change.cluster))?;
        let key = (
            change.namespace.clone().unwrap_or_default(),
            change.name.clone(),
        );
        let not_found = || format!("{} not found in {}", change.object(), change.cluster);
        let patch = change.json_patch(&rfc3339_now());
        fn patched<T: serde::Serialize + DeserializeOwned>(
            object: &T,
            patch: &json_patch::Patch,
        ) -> Result<T, String> {
            let mut doc = serde_json::to_value(object).map_err(|e| e.to_string())?;
            json_patch::patch(&mut doc, patch).map_err(|e| format!("patch rejected: {e}"))?;
            serde_json::from_value(doc).map_err(|e| e.to_string())
        }
        let object = match change.kind.as_str() {
            "Service" => KubeObject::Service(patched(
                snapshot.services.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "Namespace" => KubeObject::Namespace(patched(
                snapshot.namespaces.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "MutatingWebhookConfiguration" => KubeObject::MutatingWebhook(patched(
                snapshot.webhooks.get(&key).ok_or_else(not_found)?,
                &patch,
            )?),
            "Deployment" => {
                let d = snapshot
                    .deployments
                    .get(&key)
                    .ok_or_else(not_found)?
                    .clone();
                if change.op == Op::Restart {
                    // A restart replaces every pod: new generation, same replicas.
                    let i = self
                        .workloads
                        .iter()
                        .position(|w| {
                            w.context == change.cluster
                                && Some(&w.namespace) == change.namespace.as_ref()
                                && w.name == change.name
                        })
                        .ok_or_else(not_found)?;
                    let old = self.workloads[i].replicas;
                    for p in 0..old {
                        let w = &self.workloads[i];
                        let pod_name = format!("{}-{:04x}-{p}", w.name, w.generation);
                        let (ctx, ns) = (w.context.clone(), w.namespace.clone());
                        self.delete(&ctx, ObjectKind::Pod, &ns, &pod_name);
                    }
                    self.workloads[i].generation += 1;
                    self.render_workload(i, 0);
                    self.probe_all();
                    return Ok(self.drain());
                }
                KubeObject::Deployment(patched(&d, &patch)?)
            }
            other => return Err(format!("the demo cannot patch {other}")),
        };
        self.emit(&change.cluster, object);
        self.probe_all();
        Ok(self.drain())
    }
}
