//! The traits each service implements for the others.
//!
//! In the all-in-one binary every one of these is a local object; in cluster
//! mode the same traits are implemented by network clients. The orchestrator
//! sees nothing but these traits.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::ids::ScriptId;
use crate::invocation::{CompileError, Invocation, InvocationOutput, InvocationRecord};
use crate::limits::Limits;
use crate::route::RouteLookup;
use crate::script::{Script, ScriptRef};

/// Why an executor could not take an invocation at all. A script that fails,
/// times out or kills its worker is *not* an error here: it is an
/// [`InvocationOutput`] with the matching outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// The executor cannot run anything right now (no workers, shutting down).
    #[error("executor unavailable: {0}")]
    Unavailable(String),
    /// A fault in the executor itself.
    #[error("executor failure: {0}")]
    Internal(String),
}

/// A snapshot of an executor's capacity, for `/readyz`, metrics and the dashboard.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorStatus {
    /// Can accept invocations now.
    pub ready: bool,
    /// How invocations are isolated from each other.
    pub mode: String,
    pub workers: u32,
    pub busy: u32,
    pub idle: u32,
    /// Invocations waiting for a worker.
    pub queued: u32,
    pub spawned_total: u64,
    pub recycled_total: u64,
    /// Recycles by reason (`max_invocations`, `rss`, `cpu`, `isolation`, `after_limit`).
    #[serde(default)]
    pub recycled_by_reason: std::collections::BTreeMap<String, u64>,
    /// What is wrong when not ready.
    pub detail: Option<String>,
}

/// Runs invocations. Implemented by the worker pool (and, for tests, in-process).
#[async_trait]
pub trait ExecutorClient: Send + Sync + 'static {
    /// Runs one invocation to its end, whatever the script does.
    async fn invoke(&self, invocation: Invocation) -> Result<InvocationOutput, ExecutorError>;

    /// Compiles untrusted source under `limits` (`compile_time_ms` bounds it)
    /// and reports the first error with its position.
    async fn compile_check(
        &self,
        source: &str,
        limits: &Limits,
    ) -> Result<Result<(), CompileError>, ExecutorError>;

    fn status(&self) -> ExecutorStatus;
}

/// Finds scripts. Implementations answer from memory: the hot path never
/// waits on a database.
pub trait ScriptResolver: Send + Sync + 'static {
    fn by_id(&self, id: ScriptId) -> Option<Arc<ScriptRef>>;

    /// The script bound to `method` and a normalised path under `/exec`
    /// (see [`crate::route::normalize_request_path`]).
    fn by_route(&self, method: &str, segments: &[String]) -> RouteLookup<Arc<ScriptRef>>;
}

/// How the manager tells the orchestrator's catalog that scripts changed.
pub trait CatalogUpdates: Send + Sync + 'static {
    /// Replaces the whole catalog (at start).
    fn load_all(&self, scripts: Vec<Script>);
    /// A script was created or got a new version.
    fn upsert(&self, script: Script);
    /// A script was deleted.
    fn remove(&self, id: ScriptId);
}

/// Takes finished invocations for keeping. Must never block or fail the
/// request: an implementation under pressure sheds and counts instead.
pub trait InvocationSink: Send + Sync + 'static {
    fn record(&self, record: InvocationRecord);
}

/// Something `/readyz` must see working (the database, a remote executor).
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// Short name shown in the readiness report.
    fn name(&self) -> &'static str;
    /// `Err` says what is wrong, in a few words.
    async fn check(&self) -> Result<(), String>;
}
