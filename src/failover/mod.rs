//! Failover between control planes: plan → preflight → apply → verify, with audit and undo.

pub mod apply;
pub mod audit;
pub mod kube;
pub mod plan;
pub mod preflight;
pub mod writer;
