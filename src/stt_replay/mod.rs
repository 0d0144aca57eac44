//! Analysis of stored calls: replaying user turns through STT providers (`replay`), the summary of a
//! full-call replay (`summary`), the jobs that run full-call analyses singly or in batches
//! (`jobs`, `batch`) and the stored analyses as lists (`results`).

pub mod batch;
pub mod jobs;
pub mod replay;
pub mod results;
pub mod summary;
