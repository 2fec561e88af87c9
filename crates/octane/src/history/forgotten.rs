//! Forgotten history: the iterations of a loop before its last checkpoint.
//!
//! A loop's checkpoint at iteration `i` is a boundary, not a copy: the
//! events of iterations `< i` stay where they are (until retention deletes
//! them) and replay simply never reads them. These functions turn the
//! recorded boundaries into key ranges a store skips when loading history.

use super::{Coordinate, Location};

/// Where a loop's active history begins, as recorded in its loop event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoopBoundary {
    /// The loop event's location.
    pub location: Location,
    /// The first iteration replay reads; `u64::MAX` once the loop is done.
    pub first_active: u64,
}

/// A half-open range of encoded locations `[from, to)`. The lower bound is
/// always given (empty bytes sort first) so that stores can read the range
/// as a key range; `to: None` is unbounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub from: Vec<u8>,
    /// Exclusive upper bound.
    pub to: Option<Vec<u8>>,
}

/// The location of iteration `i`'s branch in the loop at `loop_location`.
pub fn iteration_location(loop_location: &Location, i: u64) -> Location {
    loop_location.child(Coordinate::new(i))
}

/// The iteration a location inside the loop at `loop_location` belongs to.
pub fn iteration_of(loop_location: &Location, location: &Location) -> Option<u64> {
    if !location.starts_with(loop_location) {
        return None;
    }
    let c = location
        .coordinates()
        .get(loop_location.coordinates().len())?;
    Some(c.head())
}

/// The encoded range holding iterations `[from, to)` of a loop.
pub fn iterations_range(loop_location: &Location, from: u64, to: u64) -> (Vec<u8>, Vec<u8>) {
    (
        iteration_location(loop_location, from).encode(),
        iteration_location(loop_location, to).encode(),
    )
}

/// The forgotten ranges for a set of loop boundaries: sorted and disjoint.
/// A loop that itself lies in a forgotten iteration of an outer loop adds
/// nothing (its whole subtree is already forgotten).
pub fn forgotten_ranges(mut loops: Vec<LoopBoundary>) -> Vec<(Vec<u8>, Vec<u8>)> {
    loops.sort_by(|a, b| a.location.cmp(&b.location));
    let mut out: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for l in loops {
        let key = l.location.encode();
        if out.iter().any(|(from, to)| &key >= from && &key < to) {
            continue;
        }
        if l.first_active > 0 {
            out.push(iterations_range(&l.location, 0, l.first_active));
        }
    }
    out.sort();
    out
}

/// The ranges a store reads to load active history: the complement of
/// `forgotten` (as returned by [`forgotten_ranges`]).
pub fn active_ranges(forgotten: &[(Vec<u8>, Vec<u8>)]) -> Vec<KeyRange> {
    let mut out = Vec::with_capacity(forgotten.len() + 1);
    let mut from = Vec::new();
    for (lo, hi) in forgotten {
        out.push(KeyRange {
            from,
            to: Some(lo.clone()),
        });
        from = hi.clone();
    }
    out.push(KeyRange { from, to: None });
    out
}

/// Whether `location` lies in one of the `forgotten` ranges.
pub fn is_forgotten(location: &Location, forgotten: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let key = location.encode();
    forgotten.iter().any(|(from, to)| &key >= from && &key < to)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(coords: &[u64]) -> Location {
        coords
            .iter()
            .fold(Location::root(), |l, &c| l.child(Coordinate::new(c)))
    }

    #[test]
    fn checkpoint_forgets_only_earlier_iterations() {
        let outer = at(&[2]);
        let ranges = forgotten_ranges(vec![LoopBoundary {
            location: outer.clone(),
            first_active: 20,
        }]);
        assert!(is_forgotten(&at(&[2, 0, 1]), &ranges));
        assert!(is_forgotten(&at(&[2, 19, 3]), &ranges));
        assert!(!is_forgotten(&at(&[2, 20, 1]), &ranges));
        assert!(!is_forgotten(&at(&[2, 21, 1]), &ranges));
        assert!(
            !is_forgotten(&outer, &ranges),
            "the loop event itself stays"
        );
        assert!(!is_forgotten(&at(&[1]), &ranges));
        assert!(!is_forgotten(&at(&[3]), &ranges));
    }

    #[test]
    fn loops_inside_forgotten_iterations_add_nothing() {
        let ranges = forgotten_ranges(vec![
            LoopBoundary {
                location: at(&[1]),
                first_active: 5,
            },
            LoopBoundary {
                location: at(&[1, 3, 1]),
                first_active: 9,
            },
            LoopBoundary {
                location: at(&[1, 5, 1]),
                first_active: 4,
            },
        ]);
        assert_eq!(ranges.len(), 2);
        assert!(is_forgotten(&at(&[1, 5, 1, 3, 1]), &ranges));
        assert!(!is_forgotten(&at(&[1, 5, 1, 4, 1]), &ranges));
        assert!(!is_forgotten(&at(&[1, 5, 2]), &ranges));
    }

    #[test]
    fn active_ranges_cover_the_complement() {
        let forgotten = forgotten_ranges(vec![LoopBoundary {
            location: at(&[1]),
            first_active: 3,
        }]);
        let active = active_ranges(&forgotten);
        assert_eq!(active.len(), 2);
        let inside = |l: &Location| {
            let k = l.encode();
            active
                .iter()
                .any(|r| k >= r.from && r.to.as_ref().is_none_or(|t| &k < t))
        };
        for (loc, expect) in [
            (at(&[1]), true),
            (at(&[1, 2, 1]), false),
            (at(&[1, 3, 1]), true),
            (at(&[2]), true),
        ] {
            assert_eq!(inside(&loc), expect, "{loc}");
        }
    }

    #[test]
    fn iteration_of_reads_the_iteration_coordinate() {
        assert_eq!(iteration_of(&at(&[2]), &at(&[2, 7, 1])), Some(7));
        assert_eq!(iteration_of(&at(&[2]), &at(&[3, 7, 1])), None);
        assert_eq!(iteration_of(&at(&[2]), &at(&[2])), None);
    }
}
