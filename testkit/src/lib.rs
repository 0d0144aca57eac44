//! Test support for call-insights, outside the service binary: loopback fakes of what lies outside
//! our walls — every STT provider (`stt`) and an OpenAI-compatible LLM (`llm`) — speaking their exact
//! wire formats, failures included. A dev-dependency of the service's tests and benchmarks.

// Handlers short-circuit with the provider's error response as the `Err` value; its size is irrelevant
// on this test-only path.
#![allow(clippy::result_large_err)]

pub mod llm;
pub mod stt;
