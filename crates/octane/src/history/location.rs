//! Locations: where an event sits in a workflow's history.
//!
//! A [`Location`] is a path of [`Coordinate`]s, one per level of branching:
//! `{2, 7, 1}` is the first event of the seventh child of the second root
//! event. A coordinate is a list of ordinates so that a new step can be placed
//! *between* two recorded ones (`{1.1}` sits between `{1}` and `{2}`) without
//! renumbering anything already stored.
//!
//! Locations are encoded to bytes whose lexicographic (memcmp) order equals
//! the order of the locations, so a store can key history by them and delete
//! a range of loop iterations with one `BETWEEN`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One level of a [`Location`]: a non-empty list of ordinates.
///
/// Coordinates compare lexicographically, a prefix first:
/// `{1} < {1.1} < {1.2} < {2}`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coordinate(Vec<u64>);

impl Coordinate {
    /// The plain coordinate `{n}`.
    pub fn new(n: u64) -> Self {
        Coordinate(vec![n])
    }

    /// Builds a coordinate from its ordinates; `None` for an empty list.
    ///
    /// Steps never get coordinates ending in `0` (that would leave no room
    /// to insert before them); loop iterations use `{0}` for the first one.
    pub fn from_ordinates(ords: Vec<u64>) -> Option<Self> {
        (!ords.is_empty()).then_some(Coordinate(ords))
    }

    /// The ordinates of this coordinate.
    pub fn ordinates(&self) -> &[u64] {
        &self.0
    }

    /// The first ordinate: the step's position before any insertion.
    pub fn head(&self) -> u64 {
        self.0[0]
    }

    /// The coordinate that follows `prev` when nothing is recorded after it:
    /// `{1}` at the start of a branch, `{head + 1}` after `prev`.
    pub fn after(prev: Option<&Coordinate>) -> Coordinate {
        Coordinate::new(prev.map_or(1, |p| p.head() + 1))
    }

    /// A coordinate strictly between `prev` (or the start of the branch) and
    /// `next`, for a step inserted into recorded history.
    ///
    /// # Panics
    /// If `prev >= next`, or `next` ends in `0`: the caller passes two
    /// neighbouring steps in order.
    pub fn between(prev: Option<&Coordinate>, next: &Coordinate) -> Coordinate {
        let empty = Vec::new();
        let a = prev.map_or(&empty, |p| &p.0);
        assert!(
            a.as_slice() < next.0.as_slice(),
            "between() needs prev < next"
        );
        Coordinate(between_ords(a, &next.0))
    }
}

/// An ordinate list strictly between `a` and `b` (`a < b`), never ending in 0.
fn between_ords(a: &[u64], b: &[u64]) -> Vec<u64> {
    let p = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    if p == a.len() {
        // `a` is a prefix of `b`: go just below `b` at the first extra level.
        let mut out = a.to_vec();
        match b[p] {
            0 => {
                out.push(0);
                out.extend(between_ords(&[], &b[p + 1..]));
            }
            1 => out.extend([0, 1]),
            n => out.push(n - 1),
        }
        return out;
    }
    // `a` and `b` differ at `p` with a[p] < b[p]. Prefer bumping the last
    // ordinate of `a` (keeps coordinates short over repeated insertions).
    let mut bumped = a.to_vec();
    let last = bumped.len() - 1;
    if let Some(n) = bumped[last].checked_add(1) {
        bumped[last] = n;
        if bumped.as_slice() < b {
            return bumped;
        }
    }
    let mut out = a.to_vec();
    out.push(1);
    out
}

impl fmt::Display for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{o}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Coordinate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The key of an event in a workflow's history: a path of coordinates.
///
/// The empty location is the workflow's root branch.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location(Vec<Coordinate>);

const ORDINATE: u8 = 0x02;
const END_OF_COORDINATE: u8 = 0x01;

impl Location {
    /// The root of a workflow's history.
    pub fn root() -> Self {
        Location(Vec::new())
    }

    /// This location extended by one coordinate: a child of this branch.
    pub fn child(&self, c: Coordinate) -> Location {
        let mut v = self.0.clone();
        v.push(c);
        Location(v)
    }

    /// The coordinates of this location, outermost first.
    pub fn coordinates(&self) -> &[Coordinate] {
        &self.0
    }

    /// The branch this location sits in, and its coordinate there.
    /// `None` for the root.
    pub fn split_last(&self) -> Option<(Location, &Coordinate)> {
        let (last, parent) = self.0.split_last()?;
        Some((Location(parent.to_vec()), last))
    }

    /// Whether `self` lies inside the branch `ancestor` (or is it).
    pub fn starts_with(&self, ancestor: &Location) -> bool {
        self.0.starts_with(&ancestor.0)
    }

    /// Order-preserving bytes: `a < b` exactly when `a.encode() < b.encode()`
    /// compared as bytes. Each ordinate is a marker byte and 8 big-endian
    /// bytes; each coordinate ends with a smaller marker, so a shorter
    /// coordinate sorts before its extensions.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 10);
        for c in &self.0 {
            for o in &c.0 {
                out.push(ORDINATE);
                out.extend_from_slice(&o.to_be_bytes());
            }
            out.push(END_OF_COORDINATE);
        }
        out
    }

    /// Decodes bytes written by [`Location::encode`].
    pub fn decode(mut bytes: &[u8]) -> Option<Location> {
        let mut coords = Vec::new();
        let mut ords = Vec::new();
        while let Some((&marker, rest)) = bytes.split_first() {
            match marker {
                ORDINATE if rest.len() >= 8 => {
                    let (num, rest) = rest.split_at(8);
                    ords.push(u64::from_be_bytes(num.try_into().ok()?));
                    bytes = rest;
                }
                END_OF_COORDINATE => {
                    coords.push(Coordinate::from_ordinates(std::mem::take(&mut ords))?);
                    bytes = rest;
                }
                _ => return None,
            }
        }
        ords.is_empty().then_some(Location(coords))
    }
}

impl FromStr for Location {
    type Err = String;

    /// Parses the `Display` form, e.g. `{2, 7.1, 1}` (`{}` is the root).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let inner = s
            .trim()
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| format!("location `{s}` is not of the form {{1, 2.1}}"))?;
        if inner.trim().is_empty() {
            return Ok(Location::root());
        }
        inner
            .split(',')
            .map(|c| {
                let ords = c
                    .trim()
                    .split('.')
                    .map(|o| o.parse::<u64>().map_err(|e| format!("location `{s}`: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                Coordinate::from_ordinates(ords)
                    .ok_or_else(|| format!("location `{s}`: empty coordinate"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Location)
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(ords: &[u64]) -> Coordinate {
        Coordinate::from_ordinates(ords.to_vec()).unwrap()
    }

    fn loc(cs: &[&[u64]]) -> Location {
        Location(cs.iter().map(|o| c(o)).collect())
    }

    #[test]
    fn coordinates_order_inserted_between_neighbours() {
        assert!(c(&[1]) < c(&[1, 1]));
        assert!(c(&[1, 1]) < c(&[1, 2]));
        assert!(c(&[1, 2]) < c(&[2]));
        assert!(c(&[0, 1]) < c(&[1]));
    }

    #[test]
    fn locations_order_depth_first() {
        assert!(loc(&[&[1]]) < loc(&[&[1], &[5]]));
        assert!(loc(&[&[1], &[5]]) < loc(&[&[1, 1]]));
        assert!(loc(&[&[1, 1]]) < loc(&[&[2]]));
        assert_eq!(loc(&[&[2], &[7], &[1]]).to_string(), "{2, 7, 1}");
        assert_eq!(loc(&[&[1, 1]]).to_string(), "{1.1}");
    }

    #[test]
    fn between_picks_short_coordinates() {
        assert_eq!(Coordinate::between(Some(&c(&[1])), &c(&[2])), c(&[1, 1]));
        assert_eq!(Coordinate::between(Some(&c(&[1, 1])), &c(&[2])), c(&[1, 2]));
        assert_eq!(Coordinate::between(Some(&c(&[1])), &c(&[3])), c(&[2]));
        assert_eq!(Coordinate::between(None, &c(&[1])), c(&[0, 1]));
        assert_eq!(Coordinate::between(None, &c(&[0, 1])), c(&[0, 0, 1]));
        assert_eq!(Coordinate::between(None, &c(&[5])), c(&[4]));
        assert_eq!(
            Coordinate::between(Some(&c(&[1])), &c(&[1, 1])),
            c(&[1, 0, 1])
        );
    }

    #[test]
    fn after_continues_from_the_head() {
        assert_eq!(Coordinate::after(None), c(&[1]));
        assert_eq!(Coordinate::after(Some(&c(&[3, 1]))), c(&[4]));
    }

    fn ordinates() -> impl Strategy<Value = Vec<u64>> {
        (prop::collection::vec(0u64..4, 0..4), 1u64..5).prop_map(|(mut v, last)| {
            v.push(last);
            v
        })
    }

    fn location() -> impl Strategy<Value = Location> {
        prop::collection::vec(ordinates(), 0..4)
            .prop_map(|cs| Location(cs.into_iter().map(Coordinate).collect()))
    }

    proptest! {
        #[test]
        fn between_is_strictly_between(a in ordinates(), b in ordinates(), first in any::<bool>()) {
            prop_assume!(a != b);
            let (lo, hi) = if a < b { (Coordinate(a), Coordinate(b)) } else { (Coordinate(b), Coordinate(a)) };
            let prev = (!first).then_some(&lo);
            let mid = Coordinate::between(prev, &hi);
            prop_assert!(mid.0.last() != Some(&0), "{mid} ends in 0");
            prop_assert!(prev.is_none_or(|p| p < &mid), "{mid} not after {lo}");
            prop_assert!(mid < hi, "{mid} not before {hi}");
        }

        #[test]
        fn repeated_insertion_keeps_order(seq in prop::collection::vec(any::<bool>(), 1..40)) {
            // Insert repeatedly just after the start or just before the end of
            // the gap, as successive deploys would; order never breaks.
            let mut lo: Option<Coordinate> = None;
            let mut hi = Coordinate::new(1);
            for go_low in seq {
                let mid = Coordinate::between(lo.as_ref(), &hi);
                prop_assert!(lo.as_ref().is_none_or(|l| l < &mid) && mid < hi);
                if go_low { hi = mid } else { lo = Some(mid) }
            }
        }

        #[test]
        fn encoding_preserves_order(a in location(), b in location()) {
            prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
            prop_assert_eq!(Location::decode(&a.encode()), Some(a.clone()));
            prop_assert_eq!(a.to_string().parse::<Location>(), Ok(a));
        }
    }
}
