//! From raw facts to the mesh model.

pub mod clock;
pub mod derive;
pub mod federation;
pub mod health;
pub mod istio;
pub mod model;
pub mod snapshot;
