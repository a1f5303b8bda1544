//! meshtop: a terminal dashboard for multi-cluster Istio service meshes.
//!
//! Data flows one way: sources emit raw facts → the store keeps the latest per cluster →
//! `topology::derive` (pure) builds the model → the app renders it. See README.md.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod engine;
pub mod failover;
pub mod logging;
pub mod output;
pub mod runtime;
pub mod sources;
pub mod theme;
pub mod topology;
pub mod ui;

/// mimalloc instead of glibc's malloc for every binary built on this crate (meshtop itself,
/// its tests and benchmarks): derivation and tree building allocate many small, short-lived
/// strings, and glibc's bins made `malloc` half of a filter keystroke (perf on `benches/render`);
/// with mimalloc a re-derivation is 8× and a frame 2× faster (README, Benchmarks). Built with
/// `no_thp`: mimalloc's transparent huge pages doubled the resident memory of live mode
/// (58 MB instead of 28 MB for testenv's 3 clusters).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
