//! Target `admin_body`: admin API JSON bodies through the real extractor
//! ([`JsonBody`]) and the checks the handlers apply before touching the
//! database or an executor, in the handlers' order.
//!
//! The first byte picks the body type (create, update, rollback); the rest
//! is the body. Checked: nothing panics; every refusal is a 4xx; what is
//! accepted is what the API promises (a valid name, a canonical route, at
//! most 32 well-formed origins, limits within the maxima, concurrency
//! 1–1024).

use axum::extract::{FromRequest, Request};
use axum::response::IntoResponse;
use manager_core::api::ApiError;
use manager_core::api::body::JsonBody;
use manager_core::api::scripts::{CreateScript, UpdateScript, checks, validate_name};
use manager_core::api::versions::Rollback;
use shared::{LimitOverrides, LimitsConfig};

fn extract<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let request = Request::builder()
        .method("POST")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request with a fixed method and header builds");
    crate::ready(JsonBody::<T>::from_request(request, &())).map(|JsonBody(t)| t)
}

fn refused_with_4xx(err: ApiError) {
    let status = err.into_response().status();
    assert!(
        status.is_client_error(),
        "a bad body is answered {status}, not a 4xx"
    );
}

/// Runs one input; panics when an invariant breaks.
pub fn run(data: &[u8]) {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    let result = match kind % 3 {
        0 => extract::<CreateScript>(body).and_then(create),
        1 => extract::<UpdateScript>(body).and_then(update),
        _ => extract::<Rollback>(body).map(|_| ()),
    };
    if let Err(e) = result {
        refused_with_4xx(e);
    }
}

fn create(body: CreateScript) -> Result<(), ApiError> {
    validate_name(&body.name)?;
    let bytes = body.name.as_bytes();
    assert!(
        (1..=64).contains(&bytes.len())
            && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-'),
        "an invalid name passed: {:?}",
        body.name
    );
    if let Some(route) = body.route {
        accepted_route(&checks::route(route)?);
    }
    accepted_origins(checks::origins(body.cors_origins)?);
    accepted_limits(&body.limits, &body.source)?;
    accepted_concurrency(checks::concurrency(body.concurrency)?);
    Ok(())
}

fn update(body: UpdateScript) -> Result<(), ApiError> {
    if let Some(Some(route)) = body.route {
        accepted_route(&checks::route(route)?);
    }
    if let Some(origins) = body.cors_origins {
        accepted_origins(checks::origins(origins)?);
    }
    if let Some(limits) = &body.limits {
        accepted_limits(limits, body.source.as_deref().unwrap_or(""))?;
    }
    if let Some(c) = body.concurrency {
        accepted_concurrency(checks::concurrency(c)?);
    }
    Ok(())
}

fn accepted_route(route: &shared::route::Route) {
    let pattern = route
        .parse()
        .unwrap_or_else(|e| panic!("an accepted route does not parse again: {route}: {e}"));
    assert_eq!(
        &pattern.to_route(),
        route,
        "an accepted route is not canonical"
    );
}

fn accepted_origins(origins: Vec<String>) {
    assert!(origins.len() <= 32, "{} origins passed", origins.len());
    for o in origins {
        let host = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        assert!(
            o == "*"
                || host.is_some_and(|h| !h.is_empty()
                    && h.len() <= 253
                    && !h.contains(['/', '?', '#', '@', ' ', '\r', '\n'])),
            "a malformed origin passed: {o:?}"
        );
    }
}

/// The limit checks of `check_source`, without the compile.
fn accepted_limits(overrides: &LimitOverrides, source: &str) -> Result<(), ApiError> {
    let config = LimitsConfig::default();
    config
        .validate(overrides)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limits = config.resolve(overrides);
    for ((name, value), (_, max)) in limits.entries().into_iter().zip(config.maxima.entries()) {
        assert!(
            (1..=max).contains(&value),
            "limit {name} resolved to {value}, outside 1..={max}"
        );
    }
    let size = u64::try_from(source.len()).unwrap_or(u64::MAX);
    if size > limits.source_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "source is {size} bytes; the limit is {}",
            limits.source_bytes
        )));
    }
    Ok(())
}

fn accepted_concurrency(c: Option<u32>) {
    if let Some(n) = c {
        assert!((1..=1024).contains(&n), "concurrency {n} passed");
    }
}
