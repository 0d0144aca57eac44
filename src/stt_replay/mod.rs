//! Analysis of stored calls: replaying user turns through STT providers (`replay`), the summary of a
//! full-call replay (`summary`), and the jobs that run full-call analyses singly or in batches
//! (`jobs`).

pub mod batch;
pub mod jobs;
pub mod replay;
pub mod summary;
