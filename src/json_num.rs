//! Integral numbers in JSON bodies: JSON Schema counts `40.0` as an integer, so fields accept
//! integral numbers written either way.

use serde::Deserialize;

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
