//! call-insights turns every call — an agent's session reports on the Redis stream, or a recording —
//! into stored sessions, diagnosis, STT comparisons and business analytics, served over an HTTP API,
//! a web UI and live events.
//!
//! Layers point down; nothing imports from a layer above it (CI checks it: `scripts/layers.sh`).
//!
//! | layer | modules | what they are |
//! | --- | --- | --- |
//! | delivery | `api`, `ui`, `main.rs` (the CLI) | parse the request, call the domain, render; map [`error::Error`] to an answer |
//! | composition | `app` | builds every long-lived part once, in order; the context structs the domain takes |
//! | domain | `ingest`, `sessions`, `diagnosis`, `conversation`, `recordings`, `stt_replay`, `stt_reports`, `analytics`, `webhooks`, `live`, `erasure` | what the product does |
//! | infrastructure | `config`, `db`, `storage`, `broker`, `background` (the loop runner), `lease` (the leased queue), `stt` (provider clients), `audio`, `metrics`, `produce` | the parts the domain uses |
//! | shared leaves | `error`, `tenancy`, `paging`, `signing_key`, `crypto`, `text`, `json_num` | small types every layer uses |
//!
//! Start with `docs/design.md` for how a report travels; each module's first line says what it owns.

pub mod analytics;
pub mod api;
pub mod app;
pub mod audio;
pub mod background;
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
pub mod lease;
pub mod live;
pub mod metrics;
pub mod paging;
pub mod produce;
pub mod recordings;
pub mod sessions;
pub mod signing_key;
pub mod storage;
pub mod stt;
pub mod stt_replay;
pub mod stt_reports;
pub mod tenancy;
pub mod text;
pub mod ui;
pub mod webhooks;
