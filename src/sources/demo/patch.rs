//! Failover reads and writes: objects read and JSON patches applied the way the API server
//! would.

use super::*;

impl DemoSim {
    /// The object a change touches, as JSON (what the API server would return).
    pub fn read(&self, change: &Change) -> Result<Value, String> {
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
        fn json<T: serde::Serialize>(object: Option<&T>) -> Option<Result<Value, String>> {
            object.map(|o| serde_json::to_value(o).map_err(|e| e.to_string()))
        }
        match change.kind.as_str() {
            "Service" => json(snapshot.services.get(&key)),
            "Namespace" => json(snapshot.namespaces.get(&key)),
            "MutatingWebhookConfiguration" => json(snapshot.webhooks.get(&key)),
            "Deployment" => json(snapshot.deployments.get(&key)),
            "EndpointSlice" => json(snapshot.endpoint_slices.get(&key)),
            other => return Err(format!("the demo cannot read {other}")),
        }
        .ok_or_else(not_found)?
    }

    /// Applies one failover change to the simulated clusters, exactly as the API server would
    /// apply the change's JSON patch (including its `test` of the old value). Returns the
    /// updates to send and the object after.
    pub fn write(&mut self, change: &Change) -> Result<(Vec<Update>, Value), String> {
        let before = self.read(change)?;
        let not_found = || format!("{} not found in {}", change.object(), change.cluster);
        let patch = change.patch(&before, &rfc3339_now(), false);
        let mut after = before.clone();
        json_patch::patch(&mut after, &patch).map_err(|e| format!("patch rejected: {e}"))?;
        fn typed<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
            serde_json::from_value(v.clone()).map_err(|e| e.to_string())
        }
        let object = match change.kind.as_str() {
            "Service" => KubeObject::Service(typed(&after)?),
            "Namespace" => KubeObject::Namespace(typed(&after)?),
            "MutatingWebhookConfiguration" => KubeObject::MutatingWebhook(typed(&after)?),
            "EndpointSlice" => KubeObject::EndpointSlice(typed(&after)?),
            "Deployment" if change.op == Op::Restart => {
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
                return Ok((self.drain(), after));
            }
            "Deployment" => KubeObject::Deployment(typed(&after)?),
            other => return Err(format!("the demo cannot patch {other}")),
        };
        self.emit(&change.cluster, object);
        self.probe_all();
        Ok((self.drain(), after))
    }
}
