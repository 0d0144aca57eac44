//! sea-orm entities of call-insights, one module per table. Shapes only: queries and logic live in the
//! service crate. Table names are part of the product (operators query them directly).

pub mod audio_segments;
pub mod call_sessions;
pub mod conversation_turns;
pub mod diagnosis_issues;
pub mod session_events;

pub mod prelude {
    pub use super::audio_segments::Entity as AudioSegments;
    pub use super::call_sessions::Entity as CallSessions;
    pub use super::conversation_turns::Entity as ConversationTurns;
    pub use super::diagnosis_issues::Entity as DiagnosisIssues;
    pub use super::session_events::Entity as SessionEvents;
}
