//! The timeline: one second of simulated life per step, incidents at fixed phases.

use super::*;

impl DemoSim {
    pub(super) fn set_deployment_ready(
        &mut self,
        context: &str,
        namespace: &str,
        name: &str,
        ready: i32,
    ) {
        let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == context) else {
            return;
        };
        let Some(mut d) = snapshot
            .deployments
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
        else {
            return;
        };
        let status = d.status.get_or_insert_with(Default::default);
        if status.ready_replicas != Some(ready) {
            status.ready_replicas = Some(ready);
            self.emit(context, KubeObject::Deployment(d));
        }
    }

    pub(super) fn set_gateway_address(&mut self, context: &str, host: Option<&str>) {
        let Some(snapshot) = self.world.clusters.iter().find(|c| c.context == context) else {
            return;
        };
        let key = (
            SYSTEM_NAMESPACE.to_string(),
            "istio-eastwestgateway".to_string(),
        );
        let Some(mut svc) = snapshot.services.get(&key).cloned() else {
            return;
        };
        let ingress = host.map(|h| json!([{"hostname": h}])).unwrap_or(json!([]));
        let lb = obj(json!({"ingress": ingress}));
        let status = svc.status.get_or_insert_with(Default::default);
        if status.load_balancer.as_ref() != Some(&lb) {
            status.load_balancer = Some(lb);
            self.emit(context, KubeObject::Service(svc));
        }
    }

    /// One second of simulated life.
    pub fn step(&mut self) -> Vec<Update> {
        self.tick += 1;
        let phase = self.tick % 180;
        if self.incidents {
            // A gateway loses its load-balancer address for a while.
            let west_host = (!(45..75).contains(&phase)).then_some(WEST_GW);
            self.set_gateway_address("west-1", west_host);
            // The canary control plane becomes unready and recovers.
            let canary_ready = if (100..120).contains(&phase) { 0 } else { 1 };
            self.set_deployment_ready("east-1", SYSTEM_NAMESPACE, "istiod-canary", canary_ready);
            // Then east-1's main istiod fails: its remote east-2 loses its only control plane,
            // the moment to fail east-2 over to west-1.
            let main_ready = if (140..165).contains(&phase) { 0 } else { 2 };
            self.set_deployment_ready("east-1", SYSTEM_NAMESPACE, "istiod", main_ready);
            self.federation_step(phase);
        }
        if !self.workloads.is_empty() {
            if self.rng.chance(40) {
                let i = self.rng.below(self.workloads.len() as u64) as usize;
                let old = self.workloads[i].replicas;
                let up = self.rng.chance(50);
                let new = if up {
                    (old + 1).min(6)
                } else {
                    old.saturating_sub(1).max(1)
                };
                if new != old {
                    self.workloads[i].replicas = new;
                    self.render_workload(i, old);
                }
            }
            if self.rng.chance(25) {
                let i = self.rng.below(self.workloads.len() as u64) as usize;
                let pod = self.rng.below(u64::from(self.workloads[i].replicas)) as u32;
                let until = self.tick + 3 + self.rng.below(10);
                self.workloads[i].unready_until.insert(pod, until);
                let old = self.workloads[i].replicas;
                self.render_workload(i, old);
            }
            // Pods whose unready spell ended become ready again.
            let tick = self.tick;
            let recovering: Vec<usize> = self
                .workloads
                .iter()
                .enumerate()
                .filter(|(_, w)| w.unready_until.values().any(|t| *t == tick))
                .map(|(i, _)| i)
                .collect();
            for i in recovering {
                self.workloads[i].unready_until.retain(|_, t| *t > tick);
                let old = self.workloads[i].replicas;
                self.render_workload(i, old);
            }
        }
        self.probe_all();
        self.drain()
    }
}
