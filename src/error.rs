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
    /// The service is not set up for this (e.g. no STT provider configured), or a part of it it
    /// needs (the audio store) is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// The input is larger than a configured limit (named in the message).
    #[error("{0}")]
    TooLarge(String),
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

impl From<crate::storage::StorageError> for Error {
    fn from(e: crate::storage::StorageError) -> Self {
        match e {
            crate::storage::StorageError::Unavailable(m) => {
                Error::Unavailable(format!("the audio store is unavailable: {m}"))
            }
            other => Error::Internal(other.into()),
        }
    }
}

impl Error {
    /// What went wrong, in full (an internal error's cause chain too): for logs and for the
    /// stored error of a background run, never for an HTTP answer.
    pub fn detail(&self) -> String {
        match self {
            Error::Internal(e) => format!("{e:#}"),
            other => other.to_string(),
        }
    }

    /// The database error inside, when that is what this is (callers that retry on it).
    pub fn into_db(self) -> Result<sea_orm::DbErr, Self> {
        match self {
            Error::Internal(e) => e.downcast::<sea_orm::DbErr>().map_err(Error::Internal),
            other => Err(other),
        }
    }
}

/// Whether a text value can name something stored: ingest replaces NUL characters (which
/// PostgreSQL text cannot hold), so a value containing one matches nothing and must not reach SQL.
pub fn storable(raw: &str) -> bool {
    !raw.contains('\0')
}
