//! The one place where Tidings' errors become Matrix error responses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tidings_core::{Error, ErrorKind};

/// A core error on its way to the client as `{"errcode", "error"}`.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0.to_matrix_body())).into_response()
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

/// The answer for a path no route matches.
pub async fn unknown_endpoint() -> ApiError {
    ApiError(Error::new(ErrorKind::Unrecognized { status: 404 }, "unrecognized request"))
}

/// The answer for a known path asked with the wrong method.
pub async fn wrong_method() -> ApiError {
    ApiError(Error::new(ErrorKind::Unrecognized { status: 405 }, "method not allowed on this endpoint"))
}
