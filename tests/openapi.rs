//! The committed OpenAPI document is the one the code generates (regenerate with
//! `cargo run -- openapi > openapi/openapi.json`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step is a failed test

#[test]
fn committed_openapi_document_matches_the_code() {
    let generated = call_insights::api::openapi().to_pretty_json().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json` and commit it"
    );
}
