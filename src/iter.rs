//! Helpers for scan iterators shared by the adapters.

use std::ops::Bound;

use crate::Result;

/// A key-value pair yielded by a scan.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// The iterator type returned by [`StorageBackend::scan`](crate::StorageBackend::scan).
///
/// It reads a snapshot taken when `scan` was called, streams (each `next`
/// does a bounded amount of work), and holds everything it needs: it stays
/// valid after the partition is dropped and after the backend is dropped.
/// An `Err` item is the last item.
pub type ScanIterator = Box<dyn Iterator<Item = Result<KvPair>> + Send>;

/// Wraps an iterator so that it ends after its first `Err`.
#[derive(Debug)]
pub struct Fused<I> {
    inner: Option<I>,
}

impl<I> Fused<I> {
    /// Wraps `inner`.
    pub fn new(inner: I) -> Self {
        Fused { inner: Some(inner) }
    }
}

impl<I, T> Iterator for Fused<I>
where
    I: Iterator<Item = Result<T>>,
{
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.inner.as_mut()?.next();
        if !matches!(item, Some(Ok(_))) {
            self.inner = None;
        }
        item
    }
}

/// Scan bounds as owned [`Bound`]s: start inclusive, end exclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRange {
    /// Inclusive start; `None` for the first key.
    pub start: Option<Vec<u8>>,
    /// Exclusive end; `None` for past the last key.
    pub end: Option<Vec<u8>>,
}

impl ScanRange {
    /// Copies the bounds given to `scan`.
    pub fn new(start: Option<&[u8]>, end: Option<&[u8]>) -> Self {
        ScanRange {
            start: start.map(<[u8]>::to_vec),
            end: end.map(<[u8]>::to_vec),
        }
    }

    /// Whether no key can fall in the range (`start >= end`).
    pub fn is_empty(&self) -> bool {
        matches!((&self.start, &self.end), (Some(s), Some(e)) if s >= e)
    }

    /// Whether `key` is before the exclusive end.
    pub fn before_end(&self, key: &[u8]) -> bool {
        self.end.as_deref().is_none_or(|end| key < end)
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s) && self.before_end(key)
    }

    /// The start as a [`Bound`].
    pub fn start_bound(&self) -> Bound<&[u8]> {
        self.start
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Included)
    }

    /// The end as a [`Bound`].
    pub fn end_bound(&self) -> Bound<&[u8]> {
        self.end
            .as_deref()
            .map_or(Bound::Unbounded, Bound::Excluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn fused_stops_after_the_first_error() {
        let items: Vec<Result<u8>> = vec![Ok(1), Err(Error::KeyNotFound), Ok(2)];
        let out: Vec<_> = Fused::new(items.into_iter()).collect();
        assert_eq!(out.len(), 2);
        assert!(matches!(out[0], Ok(1)));
        assert!(out[1].is_err());
    }

    #[test]
    fn range_bounds() {
        let r = ScanRange::new(Some(b"b"), Some(b"d"));
        assert!(!r.contains(b"a") && r.contains(b"b") && r.contains(b"c\xff") && !r.contains(b"d"));
        assert!(ScanRange::new(Some(b"b"), Some(b"b")).is_empty());
        assert!(ScanRange::new(Some(b"c"), Some(b"b")).is_empty());
        assert!(!ScanRange::new(None, Some(b"")).contains(b""));
        assert!(ScanRange::new(None, None).contains(b""));
    }
}
