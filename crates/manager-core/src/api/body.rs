//! JSON request bodies for the admin API: read under a byte cap, then
//! decoded with serde. Malformed JSON and missing fields are both `400` with
//! serde's message (axum's own `Json` would say `422` for the latter).

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The largest admin request body: room for a maximum-size source even
/// when JSON escaping inflates it several times.
pub const MAX_ADMIN_BODY: usize = 8 * 1024 * 1024;

/// A JSON body decoded into `T`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let announced = request
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > MAX_ADMIN_BODY as u64) {
            return Err(ApiError::PayloadTooLarge(format!(
                "request body is larger than {MAX_ADMIN_BODY} bytes"
            )));
        }
        let bytes = read_capped(request.into_body(), MAX_ADMIN_BODY).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

async fn read_capped(body: Body, cap: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, cap).await.map_err(|e| {
        let over = std::error::Error::source(&e)
            .is_some_and(<dyn std::error::Error>::is::<http_body_util::LengthLimitError>);
        if over {
            ApiError::PayloadTooLarge(format!("request body is larger than {cap} bytes"))
        } else {
            ApiError::BadRequest("the request body could not be read".into())
        }
    })
}
