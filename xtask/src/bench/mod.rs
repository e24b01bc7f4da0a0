//! `cargo xtask bench [NAME]`: each benchmark measures dockwatch against a
//! baseline in the same run and prints ratios; BENCHMARKS.md records them.

pub mod matcher;
pub mod probes;
pub mod replay;
pub mod sink;
