//! From raw facts to the mesh model.

pub mod derive;
pub mod health;
pub mod model;
pub mod snapshot;
