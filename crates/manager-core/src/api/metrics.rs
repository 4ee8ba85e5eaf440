//! `GET /metrics`: every counter, gauge and histogram of the process in
//! Prometheus text format, rendered by `metrics-exporter-prometheus`.
//!
//! Invariants: the endpoint is never public by accident: it is either part
//! of the token-protected admin router or served by [`public_router`] on
//! the operator's separate `PICLOUD_METRICS_BIND` address. Pool gauges are
//! read from [`shared::ExecutorClient::status`] at scrape time, so they are
//! never stale. The recorder is process-wide and installed once, with a
//! thread that drains histogram samples every few seconds, so memory stays
//! bounded whether or not anyone scrapes.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use shared::ExecutorStatus;

use super::AdminState;
use super::error::ApiError;

/// Histogram buckets of every `*_seconds` metric: 100 µs to a minute.
const SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];
/// Histogram buckets of every `*_bytes` metric: 4 KiB to 512 MiB.
const BYTES: &[f64] = &[
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    536_870_912.0,
];
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the metrics recorder: {0}")]
pub struct MetricsError(String);

static HANDLE: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return
/// the same handle) and returns the handle that renders it.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let error = |e: &dyn std::fmt::Display| MetricsError(e.to_string());
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .map_err(|e| error(&e))?
                .set_buckets_for_metric(Matcher::Suffix("_bytes".into()), BYTES)
                .map_err(|e| error(&e))?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| error(&e))?;
            spawn_upkeep(handle.clone()).map_err(|e| error(&e))?;
            Ok(handle)
        })
        .clone()
}

/// Drains histogram samples into their buckets every few seconds: without
/// it, a server nobody scrapes would keep every sample in memory.
fn spawn_upkeep(handle: PrometheusHandle) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        })
        .map(drop)
}

/// `/metrics` alone, without the token: for `PICLOUD_METRICS_BIND`, an
/// address only the operator's scraper can reach.
pub fn public_router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(state)
}

/// `GET /metrics`.
pub async fn render(State(state): State<Arc<AdminState>>) -> Response {
    let Some(handle) = &state.metrics else {
        return ApiError::NotFound("metrics are not enabled on this server".into()).into_response();
    };
    record_pool(&state.executor.status());
    handle.run_upkeep();
    let mut response = handle.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn record_pool(status: &ExecutorStatus) {
    metrics::gauge!("picloud_pool_ready").set(if status.ready { 1.0 } else { 0.0 });
    metrics::gauge!("picloud_pool_workers").set(f64::from(status.workers));
    metrics::gauge!("picloud_pool_busy_workers").set(f64::from(status.busy));
    metrics::gauge!("picloud_pool_idle_workers").set(f64::from(status.idle));
    metrics::gauge!("picloud_pool_queued_invocations").set(f64::from(status.queued));
    metrics::counter!("picloud_pool_worker_spawns_total").absolute(status.spawned_total);
    for (reason, n) in &status.recycled_by_reason {
        metrics::counter!("picloud_pool_worker_recycles_total", "reason" => reason.clone())
            .absolute(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_once_and_renders_histograms_with_our_buckets() {
        let first = install_recorder().unwrap();
        let again = install_recorder().unwrap();
        metrics::counter!("picloud_unit_total", "script" => "s").increment(2);
        metrics::histogram!("picloud_unit_seconds").record(0.003);
        metrics::histogram!("picloud_unit_bytes").record(10_000.0);
        first.run_upkeep();
        let text = again.render();
        assert!(
            text.contains("picloud_unit_total{script=\"s\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("picloud_unit_seconds_bucket{le=\"0.0025\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("picloud_unit_seconds_bucket{le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("picloud_unit_bytes_bucket{le=\"16384\"} 1"),
            "{text}"
        );
    }
}
