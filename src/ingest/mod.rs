//! Ingest: the contract (types and validation), the Redis stream consumer, and the persistence of
//! reports (newest `seq` wins, upserts by natural keys, audio stored before the commit).

pub mod consumer;
pub mod contract;
pub mod entry;
pub mod models;
pub mod partition;
pub mod persist;
pub mod pipeline;
pub mod redis_reply;
pub mod row_cache;
pub mod updates;

pub use consumer::{BatchReport, ConsumerError, ConsumerSettings, InsightsStreamConsumer};
pub use contract::{ContractError, SessionReport, decode_report};
pub use entry::{DecodedEntry, RawEntry, decode_entry};
pub use pipeline::{EntryOutcome, IngestError, IngestSummary, Ingestor};
