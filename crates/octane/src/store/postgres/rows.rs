//! Query pieces and row codecs the history, workflow and signal modules
//! all need.

use std::borrow::Cow;

use tokio_postgres::Row;

use crate::store::{codec, StoreError, WorkflowState};

/// Error text as PostgreSQL can store it: TEXT cannot hold a NUL byte (an
/// activity's error may quote binary data), so each becomes U+FFFD.
pub(super) fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// A condition on `workflows w`: it carries every tag given as parallel
/// arrays of keys (`$first`) and values (`$first + 1`), whose length is
/// `$first + 2`.
pub(super) fn has_all_tags(first: usize) -> String {
    format!(
        "(SELECT COUNT(*) FROM workflow_tags t, UNNEST(${}::text[], ${}::text[]) AS want(k, v)
          WHERE t.workflow_id = w.id AND t.key = want.k AND t.value = want.v) = ${}",
        first,
        first + 1,
        first + 2
    )
}

/// The state in the first column of `row`.
pub(super) fn parse_state(row: &Row) -> Result<WorkflowState, StoreError> {
    codec::parse_state(&row.try_get::<_, String>(0)?)
}
