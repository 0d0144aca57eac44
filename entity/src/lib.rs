//! sea-orm entities of call-insights, one module per table. Shapes only: queries and logic live in the
//! service crate. Table names are part of the product (operators query them directly).

/// A status column as an enum (`DeriveActiveEnum`, stored as its snake_case string), with
/// `as_str`, `ALL` and `Display`: `status_enum!(/// doc\n Status { Queued = "queued", ... })`.
#[macro_export]
macro_rules! status_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize)]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $(#[sea_orm(string_value = $s)] $variant,)+
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and serialised) string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $s,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod analysis_job_items;
pub mod analysis_jobs;
pub mod analytics_backfill_jobs;
pub mod analytics_queue;
pub mod analytics_reviews;
pub mod audio_segments;
pub mod call_analytics;
pub mod call_sessions;
pub mod conversation_turns;
pub mod diagnosis_issues;
pub mod erasure_audit;
pub mod recording_transcripts;
pub mod recordings;
pub mod session_analyses;
pub mod session_events;
pub mod stt_reports;
pub mod webhook_deliveries;
pub mod webhook_endpoints;

pub mod prelude {
    pub use super::analysis_job_items::Entity as AnalysisJobItems;
    pub use super::analysis_jobs::Entity as AnalysisJobs;
    pub use super::audio_segments::Entity as AudioSegments;
    pub use super::call_sessions::Entity as CallSessions;
    pub use super::conversation_turns::Entity as ConversationTurns;
    pub use super::diagnosis_issues::Entity as DiagnosisIssues;
    pub use super::session_analyses::Entity as SessionAnalyses;
    pub use super::session_events::Entity as SessionEvents;
    pub use super::stt_reports::Entity as SttReports;
}
