//! Shared helpers for integration tests.
#![allow(dead_code)]

pub mod live;
pub mod plugin;
pub mod testenv;
pub mod tmux;
