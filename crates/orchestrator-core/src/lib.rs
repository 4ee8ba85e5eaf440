//! PiCloud's data plane: an HTTP event comes in, the script is resolved from
//! memory, the invocation goes out through [`shared::ExecutorClient`], and the
//! outcome becomes an HTTP response.
//!
//! Invariants of this crate:
//! - It depends on `shared` only for the other services: never on
//!   `executor-core`, `sandbox` or `manager-core` (a test reads `cargo
//!   metadata` to hold that line), so cluster mode can inject network clients.
//! - The hot path never touches a database and holds no lock across an
//!   `.await`: scripts come from [`catalog::ScriptCatalog`], an atomically
//!   swapped in-memory map.
//! - Whatever a worker answers is re-checked here before it reaches a client
//!   (status range, header syntax); platform-owned headers always win.

pub mod catalog;
pub mod cors;
pub mod error;
pub mod metrics;
pub mod request;
pub mod respond;
pub mod routes;
pub mod routing;

pub use catalog::ScriptCatalog;
pub use routes::{Orchestrator, OrchestratorConfig, router};
