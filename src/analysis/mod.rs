//! Analysis of stored calls: replaying user turns through STT providers (`replay`). Full-call
//! analyses, batch jobs and report analyses build on it.

pub mod replay;
