//! dockwatch: a runtime monitor for the hardening baseline of Docker hosts.
//!
//! Data flows one way: `source` → `event` → `pipeline` (with `rules` and
//! `posture`) → `alert` → `outbox` → `sink`. See DESIGN.md for the shape and
//! each module's doc comment for why it exists.

pub mod alert;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod event;
pub mod outbox;
pub mod pipeline;
pub mod posture;
pub mod privilege;
pub mod rules;
pub mod sink;
pub mod source;
