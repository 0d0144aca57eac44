//! The web UI.
