//! # strata-host
//!
//! The Strata host: runs untrusted feature extractors, built as WebAssembly
//! components against `wit/extractor.wit`, over batches of objects.
//!
//! - [`engine`] loads components into a sandbox, plans pipelines into tiers
//!   and streams Arrow record batches through them;
//! - [`run`] is `strata run`: a pipeline over a directory of files, without
//!   a server.

pub mod api;
pub mod artifacts;
pub mod batches;
pub mod blob;
pub mod catalog;
pub mod cli;
pub mod engine;
pub mod keys;
pub mod pipeline;
pub mod progress;
pub mod run;
pub mod serve;
pub mod store;
pub mod sweeper;
pub mod time;
pub mod watch;
pub mod webhooks;
pub mod worker;

pub use engine::executor::{Document, ExecOptions, ObjectInput, Stats, execute};
pub use engine::planner::{Plan, PlanError};
pub use engine::{CallError, Engine, EngineConfig, Extractor, LoadError, Manifest};
