//! Where derivation time goes on the benchmark's big mesh, in CPU time of this thread (from
//! /proc/thread-self/schedstat, so other load on the machine does not inflate the figures).
//! The kernel advances that counter at scheduler ticks, so one short round reads 0 or a tick:
//! the summary line gives the mean over all rounds (exact in total) and the wall-clock minimum
//! and median per round.
use std::sync::Arc;
use std::time::SystemTime;

use meshtop::sources::demo::{DemoSim, Scale};
use meshtop::topology::derive::{assemble, cluster_facts, Deriver};
use meshtop::topology::snapshot::{KubeObject, Update};

#[path = "common/cpu.rs"]
mod cpu;
use cpu::cpu_ns;

fn main() {
    let scale = Scale {
        clusters: 20,
        services: std::env::var("SERVICES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000),
        endpoints_per_service_cluster: 10,
        clusters_per_service: 5,
    };
    let mut sim = DemoSim::scaled(42, scale);
    let _ = sim.drain();
    let mut store = sim.world().clone();
    for _ in 0..3 {
        let t = cpu_ns();
        let facts: Vec<_> = store
            .clusters
            .iter()
            .map(|c| Arc::new(cluster_facts(c)))
            .collect();
        let f = cpu_ns() - t;
        let t = cpu_ns();
        let _ = assemble(&facts);
        let a = cpu_ns() - t;
        println!(
            "cluster facts (20 clusters): {:.1} ms cpu, assemble: {:.1} ms cpu",
            f as f64 / 1e6,
            a as f64 / 1e6
        );
    }
    let mut deriver = Deriver::default();
    let _ = deriver.derive(&store);
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let (mut cpu_total, mut walls) = (0u64, Vec::new());
    for i in 0..rounds {
        let cluster = &store.clusters[7];
        let mut slice = cluster.endpoint_slices.values().next().unwrap().clone();
        slice.endpoints.as_mut().unwrap()[0]
            .conditions
            .get_or_insert_with(Default::default)
            .ready = Some(i % 2 == 0);
        let context = cluster.context.clone();
        store.apply(
            Update::Apply {
                context,
                object: Box::new(KubeObject::EndpointSlice(slice)),
            },
            SystemTime::now(),
        );
        let (t, wall) = (cpu_ns(), std::time::Instant::now());
        let _ = deriver.derive(&store);
        let (cpu, wall) = (cpu_ns() - t, wall.elapsed());
        cpu_total += cpu;
        walls.push(wall);
        println!(
            "after one endpoint change: {:.1} ms cpu, {:.3} ms wall",
            cpu as f64 / 1e6,
            wall.as_secs_f64() * 1e3
        );
    }
    walls.sort();
    if let (Some(min), Some(median)) = (walls.first(), walls.get(walls.len() / 2)) {
        println!(
            "after one endpoint change, {rounds} rounds: cpu mean {:.3} ms; wall min {:.3} ms, median {:.3} ms",
            cpu_total as f64 / 1e6 / rounds as f64,
            min.as_secs_f64() * 1e3,
            median.as_secs_f64() * 1e3
        );
    }
}
