//! The seam between PiCloud's three services.
//!
//! Everything the orchestrator, the manager and the executor say to each
//! other crosses this crate: identifiers, scripts, the one limits table, the
//! one outcome table, invocation requests and results, and the traits each
//! service implements for the others ([`ExecutorClient`], [`ScriptResolver`],
//! [`InvocationSink`], [`CatalogUpdates`]). No I/O lives here, so any service
//! can depend on it without pulling in another service's machinery.

pub mod ids;
pub mod invocation;
pub mod limits;
pub mod net;
pub mod outcome;
pub mod route;
pub mod script;
pub mod traits;

pub use ids::{IdParseError, InvocationId, ScriptId};
pub use invocation::{
    CompileError, Invocation, InvocationOutput, InvocationRecord, InvocationStats, ScriptRequest,
    ScriptResponse,
};
pub use limits::{LimitError, LimitOverrides, LimitSpec, Limits, LimitsConfig};
pub use net::TrustedProxies;
pub use outcome::Outcome;
pub use script::{Script, ScriptRef};
pub use traits::{
    CatalogUpdates, ExecutorClient, ExecutorError, ExecutorStatus, HealthCheck, InvocationSink,
    ScriptResolver,
};
