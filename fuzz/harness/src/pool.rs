//! Target `pool`: the `script` target's inputs run through a real
//! [`sandbox::Pool`]: a re-executed zygote, forked and fully confined
//! workers, the framed protocol, the supervisor.
//!
//! The worker may die (that is what workers are for); the parent must not,
//! every call must return an output (one caller never waits for a worker
//! past the queue timeout), and the next invocation must succeed: after
//! every input a control script runs and must answer `ok`. The parent is this process, so a panic or
//! abort in the pool client, scheduler or supervisor is the crash. Coverage
//! feedback only sees the parent's side (the workers are other processes),
//! so this target leans on the corpus and dictionary of `script`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sandbox::{Isolation, Pool, PoolConfig};
use shared::{
    ExecutorClient, Invocation, InvocationId, Limits, Outcome, Script, ScriptId, ScriptRef,
};

use crate::input::{FUZZ_LIMITS, script_source};

/// A pool and the runtime that drives it, kept for a whole campaign.
pub struct PoolTarget {
    runtime: tokio::runtime::Runtime,
    pool: Arc<Pool>,
    control: Arc<ScriptRef>,
}

impl std::fmt::Debug for PoolTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolTarget").finish_non_exhaustive()
    }
}

fn script(source: &str, limits: Limits) -> Arc<ScriptRef> {
    Arc::new(ScriptRef {
        script: Script {
            id: ScriptId::new(),
            name: "fuzz".into(),
            version: 1,
            source: source.into(),
            ..Script::default()
        },
        limits,
    })
}

impl PoolTarget {
    /// Starts a pool of two confined workers whose zygote is `executable`
    /// (a binary that calls [`sandbox::run_zygote_if_requested`] first).
    ///
    /// # Panics
    /// When the pool cannot start: the target cannot run without it.
    pub fn start(executable: PathBuf) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let mut config = PoolConfig::new(executable);
        config.workers = 2;
        config.isolation = Isolation::PerScript;
        config.per_script_concurrency = 1;
        // One invocation at a time never queues for long, but a worker may
        // be in its kill grace or still starting after a death.
        config.queue_timeout = Duration::from_secs(30);
        let pool = runtime.block_on(async {
            let pool = Pool::start(config).await.expect("the pool starts");
            assert!(
                pool.wait_until_full(Duration::from_secs(30)).await,
                "the pool's workers never became ready"
            );
            pool
        });
        Self {
            runtime,
            pool,
            control: script(r#""ok""#, Limits::DEFAULTS),
        }
    }

    /// Runs one input, then the control invocation; panics when the pool
    /// misbehaves.
    pub fn run(&self, data: &[u8]) {
        let fuzzed = script(&script_source(data), FUZZ_LIMITS);
        self.runtime.block_on(async {
            let request = crate::script::request();
            // Whatever happens to the worker, the call returns an output:
            // with one caller at a time the pool always has room, so a
            // refusal (no worker within the queue timeout) is a failure.
            let started = std::time::Instant::now();
            let fuzzed = self
                .pool
                .invoke(Invocation {
                    id: InvocationId::new(),
                    script: fuzzed,
                    request,
                })
                .await;
            let refused = match &fuzzed {
                Err(e) => Some(e.to_string()),
                Ok(out) if out.outcome == Outcome::Overloaded => {
                    Some(out.error.clone().unwrap_or_default())
                }
                Ok(_) => None,
            };
            if let Some(why) = refused {
                panic!(
                    "the input's invocation was refused after {:?}: {why}; status {:?}; metrics {:?}",
                    started.elapsed(),
                    self.pool.status(),
                    self.pool.metrics()
                );
            }
            let out = self
                .pool
                .invoke(Invocation {
                    id: InvocationId::new(),
                    script: self.control.clone(),
                    request: shared::ScriptRequest::default(),
                })
                .await
                .unwrap_or_else(|e| panic!("the invocation after the input failed: {e}"));
            assert_eq!(
                out.outcome,
                Outcome::Ok,
                "the invocation after the input did not succeed: {out:?}"
            );
            let body = out.response.map(|r| r.body).unwrap_or_default();
            assert_eq!(body, b"ok", "the control script answered something else");
        });
    }

    /// Stops the pool (its zygote and workers).
    pub fn shutdown(self) {
        self.runtime.block_on(self.pool.shutdown());
    }
}
