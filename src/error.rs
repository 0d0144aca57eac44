//! The domain's one error type: what a query or a command of the domain modules can answer besides
//! its result. Delivery maps it once at its edge (`api::error::ApiError` for HTTP, the UI's pages,
//! the CLI's messages); the domain never builds an HTTP answer.

/// Why a domain operation did not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is not acceptable; `param` names the offending field.
    #[error("{message}")]
    Invalid {
        param: &'static str,
        message: String,
    },
    /// Nothing by that name (within the caller's tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// Not there yet, with what the caller can do to make it exist.
    #[error("{message}")]
    NotYet { message: String, hint: String },
    /// The thing is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The service is not set up for this (e.g. no STT provider configured).
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours (the database, the store): logged with its cause by whoever answers.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl Error {
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            param,
            message: message.into(),
        }
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(e: sea_orm::DbErr) -> Self {
        Error::Internal(e.into())
    }
}

/// Whether a text value can name something stored: ingest replaces NUL characters (which
/// PostgreSQL text cannot hold), so a value containing one matches nothing and must not reach SQL.
pub fn storable(raw: &str) -> bool {
    !raw.contains('\0')
}
