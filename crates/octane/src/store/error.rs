//! Errors at the storage boundary, classified by what the caller must do,
//! not by which driver raised them. The driver's own error rides along as
//! the `source`, never repeated in the message.

use std::fmt;
use std::sync::Arc;

use super::WorkflowId;

/// The underlying error of a [`StoreError`]: the driver's, kept whole (and
/// cheap to share between the jobs of one failed group commit).
#[derive(Clone)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    /// Wraps an error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Cause(Arc::new(e))
    }

    /// A cause known only by its message.
    pub fn msg(message: impl Into<String>) -> Self {
        Cause::new(Message(message.into()))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Errors at the storage boundary.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The write was fenced off: another worker holds the workflow now (or
    /// it was cancelled). Drop the in-memory run; never retry the write.
    #[error(
        "lease lost on workflow {workflow_id}: another worker took it over, or it was cancelled"
    )]
    LeaseLost {
        /// The workflow whose lease was lost.
        workflow_id: WorkflowId,
    },
    /// The database could not be reached, was busy, or dropped the
    /// connection before anything committed: nothing was written. The same
    /// call may succeed later.
    #[error("the database is unavailable")]
    Unavailable(#[source] Cause),
    /// A write was under way when the database failed (the connection broke
    /// during the commit, a group commit failed): it may or may not have
    /// landed. Re-read the truth before acting again; never resend blindly.
    #[error("the database failed during a write; whether it landed is unknown")]
    OutcomeUnknown(#[source] Cause),
    /// The database refused a value for what it is (a constraint, a size
    /// limit, an encoding it cannot store, a number out of range): the same
    /// write fails the same way every time. Nothing was written.
    #[error("the database rejected the write")]
    Rejected(#[source] Cause),
    /// A stored value could not be decoded.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table holding the row.
        table: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// The database URL is not one Octane understands (shown with its
    /// password masked).
    #[error("unsupported database url `{url}`: {reason}")]
    BadUrl {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store is shutting down.
    #[error("store closed")]
    Closed,
    /// The schema could not be migrated.
    #[error("migration {version} failed: {detail}")]
    Migration {
        /// The migration that failed.
        version: i64,
        /// Why.
        detail: String,
    },
}

impl StoreError {
    /// Whether trying the same operation later may succeed: the database
    /// was away or busy. A write whose outcome is unknown is retryable only
    /// after re-reading what landed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)
        )
    }

    /// Whether the same call fails the same way every time (a value the
    /// database refuses, a row that does not decode).
    pub fn is_deterministic(&self) -> bool {
        matches!(self, StoreError::Rejected(_) | StoreError::Corrupt { .. })
    }

    /// A URL the store does not understand, with its password masked.
    pub(crate) fn bad_url(url: &str, reason: impl Into<String>) -> Self {
        StoreError::BadUrl {
            url: mask_password(url),
            reason: reason.into(),
        }
    }

    /// The same error, for a write whose commit was under way: a database
    /// that went away then may have committed it.
    pub(crate) fn during_commit(self) -> Self {
        match self {
            StoreError::Unavailable(cause) => StoreError::OutcomeUnknown(cause),
            other => other,
        }
    }
}

/// `url` with the password of its user-info part replaced by `***`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let (user_info, host) = authority.split_at(at);
    match user_info.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{host}{tail}"),
        None => url.to_string(),
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::ConstraintViolation | C::TooBig | C::TypeMismatch | C::ParameterOutOfRange) => {
                StoreError::Rejected(Cause::new(e))
            }
            Some(
                C::DatabaseBusy
                | C::DatabaseLocked
                | C::SystemIoFailure
                | C::CannotOpen
                | C::DiskFull
                | C::OutOfMemory
                | C::ReadOnly,
            ) => StoreError::Unavailable(Cause::new(e)),
            Some(_) => StoreError::OutcomeUnknown(Cause::new(e)),
            None => match e {
                rusqlite::Error::FromSqlConversionFailure(..)
                | rusqlite::Error::IntegralValueOutOfRange(..)
                | rusqlite::Error::Utf8Error(..)
                | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt {
                    table: "a query's result",
                    detail: e.to_string(),
                },
                rusqlite::Error::ToSqlConversionFailure(..) => StoreError::Rejected(Cause::new(e)),
                _ => StoreError::OutcomeUnknown(Cause::new(e)),
            },
        }
    }
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // A closed connection, or one that never opened (its source is the
        // I/O error): nothing was committed by it.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            return StoreError::Unavailable(Cause::new(e));
        }
        let Some(code) = e.code() else {
            // A row that did not convert, or a parameter that did not
            // serialize (both detected on this side), or a protocol error.
            return StoreError::OutcomeUnknown(Cause::new(e));
        };
        let class = &code.code()[..2];
        if matches!(class, "22" | "23" | "54") {
            return StoreError::Rejected(Cause::new(e));
        }
        let transient = matches!(class, "08" | "53" | "57")
            || [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
            ]
            .contains(code);
        if transient {
            StoreError::Unavailable(Cause::new(e))
        } else {
            StoreError::OutcomeUnknown(Cause::new(e))
        }
    }
}

#[cfg(feature = "postgres")]
impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Closed => StoreError::Closed,
            other => StoreError::Unavailable(Cause::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://octane:s3cret@127.0.0.1:5432/db?x=1"),
            "postgres://octane:***@127.0.0.1:5432/db?x=1"
        );
        assert_eq!(
            mask_password("postgres://a:b:c@h/d"),
            "postgres://a:***@h/d"
        );
        assert_eq!(
            mask_password("postgres://octane@h/db"),
            "postgres://octane@h/db"
        );
        assert_eq!(mask_password("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            mask_password("postgres://u:p@/db?host=/tmp"),
            "postgres://u:***@/db?host=/tmp"
        );
    }

    #[test]
    fn the_cause_is_a_source_not_part_of_the_message() {
        let e = StoreError::Unavailable(Cause::msg("connection refused"));
        assert_eq!(e.to_string(), "the database is unavailable");
        let chain = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(chain, "the database is unavailable: connection refused");
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_errors_are_classified_by_what_to_do() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY)")
            .unwrap();
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        let dup: StoreError = conn
            .execute("INSERT INTO t VALUES (1)", [])
            .unwrap_err()
            .into();
        assert!(matches!(dup, StoreError::Rejected(_)), "{dup:?}");
        assert!(dup.is_deterministic() && !dup.is_retryable());
        let text: StoreError = conn
            .query_row("SELECT 'x'", [], |r| r.get::<_, i64>(0))
            .unwrap_err()
            .into();
        assert!(matches!(text, StoreError::Corrupt { .. }), "{text:?}");
    }
}
