//! Application state and how it changes. No I/O here.

pub mod action;
pub mod state;
pub mod tree;
pub mod update;
