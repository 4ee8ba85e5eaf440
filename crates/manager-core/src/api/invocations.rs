//! Invocation records over the admin API:
//! - `GET /api/admin/scripts/{id}/invocations?limit=&before=&outcome=`:
//!   newest first, cursor paging (`before` is the `next_before` of the
//!   previous page), without log lines;
//! - `GET /api/admin/invocations/{invocation_id}`: one record with its logs;
//! - `GET /api/admin/scripts/{id}/stats?window=1h&buckets=60`;
//! - `GET /api/admin/scripts/{id}/invocations/stream`: server-sent events,
//!   one `invocation` event per record as it is written.
//!
//! `{id}` is a script id or name. Query strings are parsed here, so a bad
//! one is the API's usual JSON `400`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use serde_json::Value;
use shared::{InvocationId, InvocationRecord};

use super::AdminState;
use super::error::{ApiError, ErrorResponses};
use super::scripts::find;
use crate::records::stats::{ScriptStats, parse_window, summarize};
use crate::records::{Drops, StreamItem, metric};
use crate::store::StoreError;
use crate::store::invocations::{
    InvocationCursor, InvocationQuery, ListedInvocation, OutcomeFilter,
};

/// Records per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// Chart slices when `buckets` is not given, and the most allowed.
const DEFAULT_BUCKETS: u32 = 60;
const MAX_BUCKETS: u32 = 500;
/// The most records one stats request reads.
const MAX_SAMPLES: u32 = 100_000;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `GET .../invocations`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Page {
    /// Records without their log lines, newest first.
    #[schema(value_type = Vec<Object>)]
    pub invocations: Vec<Value>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// `GET .../stats`.
#[derive(Debug, Serialize)]
pub struct StatsView {
    #[serde(flatten)]
    pub stats: ScriptStats,
    /// What the record pipeline shed or dropped for this script since the server started.
    pub records: Drops,
}

/// A failed read, counted in `picloud_database_errors_total` and turned into the API's error.
fn counted(err: StoreError, operation: &'static str) -> ApiError {
    metrics::counter!(metric::DATABASE_ERRORS, "operation" => operation).increment(1);
    err.into()
}

fn params(query: Params) -> Result<HashMap<String, String>, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|_| ApiError::BadRequest("the query string does not parse".into()))
}

fn number(
    params: &HashMap<String, String>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("`{name}` must be a whole number from 1 to {max}"))
            }),
    }
}

/// A listed record as JSON: the record without `logs`, with `log_lines`.
fn listed_view(item: &ListedInvocation) -> Result<Value, ApiError> {
    let mut value =
        serde_json::to_value(&item.record).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("logs");
        map.insert("log_lines".into(), item.log_lines.into());
    }
    Ok(value)
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}/invocations", tag = "invocations",
    params(
        ("id" = String, Path, description = "Script id (UUID) or name"),
        ("limit" = Option<u32>, Query, description = "Records per page"),
        ("before" = Option<String>, Query, description = "Cursor from `next_before`"),
        ("outcome" = Option<String>, Query, description = "Only this outcome (or `error` for any failure)"),
    ),
    responses(
        (status = 200, description = "One page of records, newest first", body = Page),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn list(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Json<Page>, ApiError> {
    let params = params(query)?;
    let limit = number(
        &params,
        "limit",
        DEFAULT_LIMIT,
        crate::store::invocations::MAX_PAGE,
    )?;
    let before = params
        .get("before")
        .map(|b| b.parse::<InvocationCursor>())
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let outcome = params
        .get("outcome")
        .map(|o| o.parse::<OutcomeFilter>())
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let script = find(&state, &id).await?;
    let page = state
        .repo
        .list_invocations(&InvocationQuery {
            script_id: script.id,
            limit,
            before,
            outcome,
        })
        .await
        .map_err(|e| counted(e, "list_invocations"))?;
    Ok(Json(Page {
        invocations: page
            .items
            .into_iter()
            .map(|i| listed_view(&i))
            .collect::<Result<_, _>>()?,
        next_before: page.next_before.map(|c| c.to_string()),
    }))
}

#[utoipa::path(
    get, path = "/api/admin/invocations/{id}", tag = "invocations",
    params(("id" = String, Path, description = "Invocation id (UUID)")),
    responses(
        (status = 200, description = "The record with its log lines", body = shared::InvocationRecord),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn get(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Json<InvocationRecord>, ApiError> {
    let id: InvocationId = id
        .parse()
        .map_err(|e: shared::IdParseError| ApiError::BadRequest(e.to_string()))?;
    state
        .repo
        .get_invocation(id)
        .await
        .map_err(|e| counted(e, "get_invocation"))?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no invocation {id} (it may not be written yet, or was pruned)"
            ))
        })
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}/stats", tag = "invocations",
    params(
        ("id" = String, Path, description = "Script id (UUID) or name"),
        ("window" = Option<String>, Query, description = "How far back, e.g. `15m`, `1h`, `7d`"),
        ("buckets" = Option<u32>, Query, description = "Points in the time series"),
    ),
    responses(
        (status = 200, description = "Counts, error rate, percentiles and a time series", body = Object),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn stats(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
    query: Params,
) -> Result<Json<StatsView>, ApiError> {
    let params = params(query)?;
    let window = parse_window(params.get("window").map_or("1h", String::as_str))
        .map_err(ApiError::BadRequest)?;
    let buckets = number(&params, "buckets", DEFAULT_BUCKETS, MAX_BUCKETS)?;
    let script = find(&state, &id).await?;
    let now = chrono::Utc::now();
    // Whole microseconds, as the records themselves are kept.
    let to = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let since =
        to - chrono::Duration::from_std(window).map_err(|e| ApiError::Internal(e.to_string()))?;
    let samples = state
        .repo
        .invocation_samples(script.id, since, MAX_SAMPLES)
        .await
        .map_err(|e| counted(e, "invocation_samples"))?;
    let at_cap = samples.len() >= MAX_SAMPLES as usize;
    Ok(Json(StatsView {
        stats: summarize(&samples, to, window, buckets, at_cap),
        records: state.records.drops(script.id),
    }))
}

#[utoipa::path(
    get, path = "/api/admin/scripts/{id}/invocations/stream", tag = "invocations",
    params(("id" = String, Path, description = "Script id (UUID) or name")),
    responses(
        (status = 200, description = "Server-sent events, one `data:` record per new invocation", content_type = "text/event-stream", body = String),
        ErrorResponses,
    ),
    security(("admin_token" = []))
)]
pub async fn stream(
    State(state): State<Arc<AdminState>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let script = find(&state, &id).await?;
    let script_id = script.id;
    let subscription = state.records.subscribe();
    let events = futures_util::stream::unfold(subscription, move |mut sub| async move {
        loop {
            match sub.next().await? {
                StreamItem::Record(record) if record.script_id == script_id => {
                    let event = Event::default()
                        .event("invocation")
                        .id(record.id.to_string())
                        .json_data(&*record)
                        .unwrap_or_else(|_| {
                            Event::default().event("error").data("unencodable record")
                        });
                    return Some((Ok(event), sub));
                }
                StreamItem::Record(_) => {}
                StreamItem::Lagged(skipped) => {
                    let event = Event::default()
                        .event("lagged")
                        .data(serde_json::json!({ "skipped": skipped }).to_string());
                    return Some((Ok(event), sub));
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
