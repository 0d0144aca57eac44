//! call-insights: consumes Atlas's session reports from Redis, stores sessions, turns, events and audio,
//! and serves them to QA engineers.

pub mod analysis;
pub mod analytics;
pub mod api;
pub mod app;
pub mod audio;
pub mod broker;
pub mod config;
pub mod conversation;
pub mod crypto;
pub mod db;
pub mod diagnosis;
pub mod erasure;
pub mod error;
pub mod ingest;
pub mod json_num;
pub mod live;
pub mod metrics;
pub mod paging;
pub mod produce;
pub mod recordings;
pub mod reports;
pub mod sessions;
pub mod signing_key;
pub mod storage;
pub mod stt;
pub mod tenancy;
pub mod text;
pub mod ui;
pub mod webhooks;
