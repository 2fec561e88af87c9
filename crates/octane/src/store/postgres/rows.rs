//! Values as rows hold them: what both the history and the workflow
//! modules encode and decode the same way.

use std::borrow::Cow;

/// Error text as PostgreSQL can store it: TEXT cannot hold a NUL byte (an
/// activity's error may quote binary data), so each becomes U+FFFD.
pub(super) fn without_nul(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}
