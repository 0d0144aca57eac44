//! Extractors whose rejections use the API's error shape (400 naming the parameter), and parsing of
//! path parameters.

use super::error::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;
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

/// Whether a text value can name something stored: ingest replaces NUL characters (which
/// PostgreSQL text cannot hold), so a value containing one matches nothing and must not reach SQL.
pub fn storable(raw: &str) -> bool {
    !raw.contains('\0')
}

/// JSON Schema counts `40.0` as an integer: accept integral numbers written either way.
fn integral_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(D::Error::custom(format!("expected an integer, got {n}"))),
    }
}

/// `i64` field of a JSON body (see `integral_i64`).
pub fn json_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    integral_i64(d)
}

/// Optional `u32` field of a JSON body (see `integral_i64`).
pub fn json_opt_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let v: Option<serde_json::Number> = Option::deserialize(d)?;
    v.map(|n| {
        let i = integral_i64(n).map_err(D::Error::custom)?;
        u32::try_from(i).map_err(|_| D::Error::custom(format!("{i} is out of range")))
    })
    .transpose()
}
