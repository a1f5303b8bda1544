//! Origins of facts. Each source emits [`Update`](crate::topology::snapshot::Update)s only.

pub mod demo;
pub mod istiod;
pub mod kube;
