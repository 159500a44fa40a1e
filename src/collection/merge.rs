//! Merging the answers of a collection's shards into one answer. Each shard is asked by
//! the node (locally or on a peer holding a replica); these functions only combine what
//! came back, so the result is the same whichever replicas answered.

use std::collections::{BTreeMap, HashSet};

use super::config::Distance;
use super::point::{Record, ScoredPoint};
use super::sort_by_score;
use crate::types::PointId;

/// The records found for `ids`, in the request's order, each id once.
pub fn retrieve(ids: &[PointId], found: impl IntoIterator<Item = Record>) -> Vec<Record> {
    let mut found: BTreeMap<PointId, Record> = found.into_iter().map(|r| (r.id, r)).collect();
    let mut seen = HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(**id))
        .filter_map(|id| found.remove(id))
        .collect()
}

/// One page of `limit` records in id order, and the id the next page starts at. Every
/// shard must have been asked for `limit + 1` records from the same offset.
pub fn scroll(
    records: impl IntoIterator<Item = Record>,
    limit: usize,
) -> (Vec<Record>, Option<PointId>) {
    let mut records: Vec<Record> = records.into_iter().collect();
    records.sort_by_key(|r| r.id);
    let next = records.get(limit).map(|r| r.id);
    records.truncate(limit);
    (records, next)
}

/// The best hits of all shards: ordered by `distance`, `offset` skipped, `limit` kept.
/// Every shard must have been asked for `offset + limit` hits.
pub fn search(
    hits: impl IntoIterator<Item = ScoredPoint>,
    distance: Distance,
    offset: usize,
    limit: usize,
) -> Vec<ScoredPoint> {
    let mut hits: Vec<ScoredPoint> = hits.into_iter().collect();
    sort_by_score(&mut hits, distance);
    hits.into_iter().skip(offset).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> Record {
        Record {
            id: PointId::Num(id),
            payload: None,
            vector: None,
        }
    }

    fn hit(id: u64, score: f32) -> ScoredPoint {
        ScoredPoint {
            id: PointId::Num(id),
            version: 0,
            score,
            payload: None,
            vector: None,
        }
    }

    #[test]
    fn retrieve_keeps_request_order_without_duplicates() {
        let ids = [3, 1, 3, 9].map(PointId::Num);
        let got = retrieve(&ids, [record(1), record(3)]);
        assert_eq!(
            got.iter().map(|r| r.id).collect::<Vec<_>>(),
            [3, 1].map(PointId::Num)
        );
    }

    #[test]
    fn scroll_pages_in_id_order_across_shards() {
        let (page, next) = scroll([record(5), record(1), record(4), record(2)], 3);
        assert_eq!(
            page.iter().map(|r| r.id).collect::<Vec<_>>(),
            [1, 2, 4].map(PointId::Num)
        );
        assert_eq!(next, Some(PointId::Num(5)));
        assert_eq!(scroll([record(1)], 3).1, None);
    }

    #[test]
    fn search_orders_by_distance_then_skips_the_offset() {
        let hits = [hit(1, 0.5), hit(2, 0.9), hit(3, 0.1)];
        let best: Vec<_> = search(hits.clone(), Distance::Dot, 1, 1)
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(best, [PointId::Num(1)]);
        let nearest: Vec<_> = search(hits, Distance::Euclid, 0, 2)
            .iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(nearest, [3, 1].map(PointId::Num));
    }
}
