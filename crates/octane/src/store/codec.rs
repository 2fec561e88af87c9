//! Values as both backends store them: ids and states as text, locations as
//! their order-preserving bytes, 64-bit hashes and counters in signed
//! columns. Decoding what does not fit is a [`StoreError::Corrupt`];
//! encoding what a column cannot hold is a [`StoreError::Rejected`].

use super::{Cause, StoreError, WorkflowId, WorkflowState};
use crate::history::{EventKind, Location};

/// A workflow id read from a row.
pub(crate) fn parse_id(s: &str) -> Result<WorkflowId, StoreError> {
    s.parse().map_err(|e| StoreError::Corrupt {
        table: "workflows",
        detail: format!("bad workflow id `{s}`: {e}"),
    })
}

/// A workflow state read from a row.
pub(crate) fn parse_state(s: &str) -> Result<WorkflowState, StoreError> {
    s.parse().map_err(|detail| StoreError::Corrupt {
        table: "workflows",
        detail,
    })
}

/// An event's location read from a row.
pub(crate) fn decode_location(bytes: &[u8]) -> Result<Location, StoreError> {
    Location::decode(bytes).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        detail: format!("undecodable location {bytes:02x?}"),
    })
}

/// An event kind read from a row.
pub(crate) fn decode_kind(code: i64) -> Result<EventKind, StoreError> {
    EventKind::from_code(code).ok_or_else(|| StoreError::Corrupt {
        table: "events",
        detail: format!("unknown event kind {code}"),
    })
}

/// Input hashes use all 64 bits; the columns are signed, so the bits are
/// stored as they are.
pub(crate) fn encode_hash(h: u64) -> i64 {
    i64::from_be_bytes(h.to_be_bytes())
}

/// The hash [`encode_hash`] stored.
pub(crate) fn decode_hash(v: i64) -> u64 {
    u64::from_be_bytes(v.to_be_bytes())
}

/// A counter for a signed column of `bits` bits (32 or 64).
pub(crate) fn encode_count(what: &'static str, v: u64, bits: u32) -> Result<i64, StoreError> {
    let max = if bits >= 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    i64::try_from(v).ok().filter(|v| *v <= max).ok_or_else(|| {
        StoreError::Rejected(Cause::msg(format!(
            "event {what} {v} is out of the range its column holds"
        )))
    })
}

/// A counter read from a signed column.
pub(crate) fn decode_count(what: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        table: "events",
        detail: format!("negative {what} {v}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_keep_all_their_bits() {
        for h in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(decode_hash(encode_hash(h)), h);
        }
    }

    #[test]
    fn counters_out_of_range_are_rejected_not_truncated() {
        assert_eq!(encode_count("version", 7, 32).unwrap(), 7);
        let too_big = encode_count("version", u64::from(u32::MAX), 32).unwrap_err();
        assert!(too_big.is_deterministic(), "{too_big:?}");
        assert!(encode_count("iteration", u64::MAX, 64).is_err());
        assert!(decode_count("attempts", -1).is_err());
    }
}
