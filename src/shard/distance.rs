//! Distance functions over contiguous `f32` slices, written so the compiler turns the
//! inner loops into SIMD (eight independent accumulators, no bounds checks in the body).
//!
//! Internally every metric is a *similarity*: higher is better. Cosine vectors are
//! normalised once at insert time, so cosine is a dot product. Euclid and Manhattan use
//! the negated distance internally; [`Distance::to_user_score`] turns it back into the
//! distance that Qdrant reports.

use crate::collection::config::Distance;

const LANES: usize = 8;

/// Dot product.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for i in 0..chunks {
        let (x, y) = (
            &a[i * LANES..i * LANES + LANES],
            &b[i * LANES..i * LANES + LANES],
        );
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        sum += a[i] * b[i];
    }
    sum
}

/// Squared Euclidean distance.
pub fn squared_euclid(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for i in 0..chunks {
        let (x, y) = (
            &a[i * LANES..i * LANES + LANES],
            &b[i * LANES..i * LANES + LANES],
        );
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        let d = a[i] - b[i];
        sum += d * d;
    }
    sum
}

/// Manhattan (L1) distance.
pub fn manhattan(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let chunks = n / LANES;
    for i in 0..chunks {
        let (x, y) = (
            &a[i * LANES..i * LANES + LANES],
            &b[i * LANES..i * LANES + LANES],
        );
        for l in 0..LANES {
            acc[l] += (x[l] - y[l]).abs();
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * LANES..n {
        sum += (a[i] - b[i]).abs();
    }
    sum
}

impl Distance {
    /// Prepares a vector for storage or as a query: cosine vectors are normalised.
    pub fn preprocess(&self, mut v: Vec<f32>) -> Vec<f32> {
        if *self == Distance::Cosine {
            let norm = dot(&v, &v).sqrt();
            if norm > f32::EPSILON {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
        v
    }

    /// Internal similarity of two preprocessed vectors: higher is better for every metric.
    #[inline]
    pub fn similarity(&self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => dot(a, b),
            Distance::Euclid => -squared_euclid(a, b),
            Distance::Manhattan => -manhattan(a, b),
        }
    }

    /// The score Qdrant reports for an internal similarity.
    pub fn to_user_score(&self, similarity: f32) -> f32 {
        match self {
            Distance::Cosine | Distance::Dot => similarity,
            Distance::Euclid => (-similarity).max(0.0).sqrt(),
            Distance::Manhattan => -similarity,
        }
    }

    /// Whether a user score passes `score_threshold` (for distances: not farther than it).
    pub fn passes_threshold(&self, user_score: f32, threshold: f32) -> bool {
        match self {
            Distance::Cosine | Distance::Dot => user_score >= threshold,
            Distance::Euclid | Distance::Manhattan => user_score <= threshold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_match_naive_sums() {
        let a: Vec<f32> = (0..19).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..19).map(|i| 3.0 - i as f32).collect();
        let naive_dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let naive_l2: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        let naive_l1: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        assert!((dot(&a, &b) - naive_dot).abs() < 1e-3);
        assert!((squared_euclid(&a, &b) - naive_l2).abs() < 1e-3);
        assert!((manhattan(&a, &b) - naive_l1).abs() < 1e-3);
    }

    #[test]
    fn user_scores_are_distances_for_euclid() {
        let d = Distance::Euclid;
        let s = d.similarity(&[0.0, 0.0], &[3.0, 4.0]);
        assert!((d.to_user_score(s) - 5.0).abs() < 1e-6);
        assert!(d.passes_threshold(5.0, 6.0));
        assert!(!d.passes_threshold(5.0, 4.0));
    }

    #[test]
    fn cosine_normalises() {
        let v = Distance::Cosine.preprocess(vec![3.0, 4.0]);
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
    }
}
