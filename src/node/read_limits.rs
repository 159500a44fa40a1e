//! Bounds on the work and memory of one read request: every search, query, batch and
//! scroll of REST and gRPC passes through here before any shard is asked.
//!
//! The policy, from `service.*` settings (Qdrant's strict-mode limits are not applied:
//! shoal does not store a collection's `strict_mode_config`):
//! - one search's window `limit + offset` (computed without wrapping) is at most
//!   `max_query_limit`, and so is a scroll's `limit`;
//! - a batch holds at most `search_max_batchsize` searches;
//! - a batch asks for at most `max_batch_results` results in total: the sum of the
//!   windows, each capped at the collection's point count when that is known.
//!
//! Shards size their result heaps by the points they hold, not by the window
//! (`shard::search`), so what passes here costs memory in proportion to real results.

use crate::error::{Error, Result};
use crate::settings::ServiceSettings;

/// The limits of one node, taken from its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest `limit + offset` of one search or query, and largest scroll `limit`.
    pub max_query_limit: usize,
    /// Most searches in one batch.
    pub search_max_batchsize: usize,
    /// Most results (sum of capped windows) one batch may ask for.
    pub max_batch_results: usize,
}

/// `limit` and `offset` of one search or query in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: usize,
    pub offset: usize,
}

impl ReadLimits {
    /// The limits configured in `service`.
    pub fn from_settings(service: &ServiceSettings) -> ReadLimits {
        ReadLimits {
            max_query_limit: service.max_query_limit,
            search_max_batchsize: service.search_max_batchsize,
            max_batch_results: service.max_batch_results,
        }
    }

    /// Checks a batch of searches (one search is a batch of one). `points` is an upper
    /// bound on the collection's points when known; it caps each window in the total.
    pub fn check_batch(&self, windows: &[Window], points: Option<usize>) -> Result<()> {
        if windows.len() > self.search_max_batchsize {
            return Err(exceeded(
                windows.len(),
                self.search_max_batchsize,
                "number of searches in a batch",
                "service.search_max_batchsize",
            ));
        }
        let mut total: usize = 0;
        for window in windows {
            let size = self.window(*window)?;
            let capped = points.map_or(size, |points| size.min(points));
            total = total.saturating_add(capped);
        }
        if total > self.max_batch_results {
            return Err(exceeded(
                total,
                self.max_batch_results,
                "sum of limit + offset over the batch",
                "service.max_batch_results",
            ));
        }
        Ok(())
    }

    /// `limit + offset` of one search, checked against `max_query_limit`.
    pub fn window(&self, window: Window) -> Result<usize> {
        let size = window.limit.checked_add(window.offset).ok_or_else(|| {
            Error::BadRequest(format!(
                "limit + offset is too large ({} + {}); the most allowed is {}",
                window.limit, window.offset, self.max_query_limit
            ))
        })?;
        if size > self.max_query_limit {
            return Err(exceeded(
                size,
                self.max_query_limit,
                "limit + offset",
                "service.max_query_limit",
            ));
        }
        Ok(size)
    }

    /// Checks the `limit` of one scroll page.
    pub fn check_scroll(&self, limit: usize) -> Result<()> {
        if limit > self.max_query_limit {
            return Err(exceeded(
                limit,
                self.max_query_limit,
                "limit",
                "service.max_query_limit",
            ));
        }
        Ok(())
    }
}

/// Qdrant's wording for a request over a configured limit.
fn exceeded(value: usize, limit: usize, what: &str, key: &str) -> Error {
    Error::BadRequest(format!(
        "Limit exceeded {value} > {limit} for \"{what}\" (setting {key}). Reduce it to {limit} or below."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReadLimits {
        ReadLimits {
            max_query_limit: 100,
            search_max_batchsize: 3,
            max_batch_results: 150,
        }
    }

    fn w(limit: usize, offset: usize) -> Window {
        Window { limit, offset }
    }

    fn is_bad_request(r: Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(Error::BadRequest(_)))
    }

    #[test]
    fn defaults_come_from_the_settings() {
        let l = ReadLimits::from_settings(&ServiceSettings::default());
        assert_eq!(l.max_query_limit, 100_000);
        assert_eq!(l.search_max_batchsize, 1000);
        assert_eq!(l.max_batch_results, 100_000);
    }

    #[test]
    fn window_is_checked_without_wrapping() {
        let l = limits();
        assert_eq!(l.window(w(60, 40)).unwrap(), 100);
        assert!(is_bad_request(l.window(w(60, 41))));
        assert!(is_bad_request(l.window(w(usize::MAX, 1))));
        assert!(is_bad_request(l.window(w(1, 1 << 63))));
        assert!(is_bad_request(l.window(w(usize::MAX, usize::MAX))));
    }

    #[test]
    fn batch_size_is_bounded() {
        let l = limits();
        assert!(l.check_batch(&[w(1, 0); 3], None).is_ok());
        let err = l.check_batch(&[w(1, 0); 4], None).unwrap_err();
        assert!(err.to_string().contains("4 > 3"), "{err}");
    }

    #[test]
    fn batch_total_is_bounded_and_capped_by_the_point_count() {
        let l = limits();
        assert!(l.check_batch(&[w(50, 0), w(50, 50)], None).is_ok());
        assert!(is_bad_request(l.check_batch(&[w(100, 0), w(51, 0)], None)));
        // With 40 points no search can return more than 40.
        assert!(l.check_batch(&[w(100, 0); 3], Some(40)).is_ok());
        assert!(is_bad_request(l.check_batch(&[w(100, 0); 3], Some(51))));
        // Each window is still checked on its own, whatever the point count.
        assert!(is_bad_request(l.check_batch(&[w(101, 0)], Some(1))));
    }

    #[test]
    fn scroll_limit_is_bounded() {
        let l = limits();
        assert!(l.check_scroll(100).is_ok());
        assert!(is_bad_request(l.check_scroll(101)));
    }
}
