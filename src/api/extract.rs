//! Extractors whose rejections use the API's error shape (400 naming the parameter), and parsing of
//! path parameters.

use super::error::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// `Query<T>` answering bad query strings with a 400 in the common error shape.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(ApiError::bad_request("query", e.body_text())),
        }
    }
}

pub fn parse_uuid(param: &'static str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::bad_request(param, format!("{param} must be a UUID, got {raw:?}")))
}
