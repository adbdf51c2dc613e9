//! Error answers of the API listener: `{"error": "…"}` with a 4xx or 5xx
//! status, naming the parameter or header at fault.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::AuthError;
use crate::db::store::StoreError;
use crate::model::scope::ScopeError;

/// An error answer: `{"error": message}` with a 4xx/5xx status.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            (self.status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Missing | AuthError::NotBearer | AuthError::Unknown => {
                StatusCode::UNAUTHORIZED
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ScopeError> for ApiError {
    fn from(e: ScopeError) -> Self {
        let status = match e {
            ScopeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ScopeError::BadParam(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Request(message) => return ApiError::bad_request(message),
            StoreError::NotFound(message) => return ApiError::new(StatusCode::NOT_FOUND, message),
            _ => {}
        }
        tracing::error!(error = %e, "query failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "analytics database unavailable; retry later",
        )
    }
}
