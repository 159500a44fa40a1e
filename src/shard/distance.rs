//! Distance functions over contiguous `f32` slices, written so the compiler turns the
//! inner loops into SIMD (independent accumulators, no bounds checks in the body), and
//! compiled a second time for AVX2 + FMA, chosen at run time.
//!
//! Internally every metric is a *similarity*: higher is better. Cosine vectors are
//! normalised once at insert time, so cosine is a dot product. Euclid and Manhattan use
//! the negated distance internally; [`Distance::to_user_score`] turns it back into the
//! distance that Qdrant reports.

use crate::collection::config::Distance;

/// Independent accumulators: enough to fill two AVX registers.
const LANES: usize = 16;

/// Sums `term(a[i], b[i])` with independent lanes, so the loop vectorises. Always
/// inlined, so each caller below gets its own instance compiled for its CPU features.
#[inline(always)]
fn sum_terms(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (head_a, tail_a) = a.split_at(n - n % LANES);
    let (head_b, tail_b) = b.split_at(n - n % LANES);
    for (x, y) in head_a.chunks_exact(LANES).zip(head_b.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += term(x[l], y[l]);
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in tail_a.iter().zip(tail_b) {
        sum += term(*x, *y);
    }
    sum
}

/// The kernels, compiled once for the baseline CPU and once with AVX2 + FMA; the
/// AVX2 copy is chosen at run time when the CPU has it (std caches the detection).
macro_rules! kernel {
    ($(#[$doc:meta])* $name:ident, $avx:ident, $term:expr) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(a: &[f32], b: &[f32]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports the features the function is compiled for.
                    return unsafe { $avx(a, b) };
                }
            }
            sum_terms(a, b, $term)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx(a: &[f32], b: &[f32]) -> f32 {
            sum_terms(a, b, $term)
        }
    };
}

kernel!(
    /// Dot product.
    dot, dot_avx2, |x, y| x * y
);
kernel!(
    /// Squared Euclidean distance.
    squared_euclid, squared_euclid_avx2, |x, y| (x - y) * (x - y)
);
kernel!(
    /// Manhattan (L1) distance.
    manhattan, manhattan_avx2, |x: f32, y: f32| (x - y).abs()
);

impl Distance {
    /// Prepares a vector for storage or as a query: cosine vectors are normalised.
    ///
    /// Idempotent: a vector whose norm is already 1 within the rounding error of computing
    /// it (`dim` ulps) is kept as it is, so a stored vector that is upserted again (a
    /// `stream_records` transfer re-sends stored vectors) stays the same bit for bit and
    /// the replicas of a shard do not drift apart by an ulp.
    pub fn preprocess(&self, mut v: Vec<f32>) -> Vec<f32> {
        if *self == Distance::Cosine {
            let norm = dot(&v, &v).sqrt();
            let rounding = (v.len().max(1) as f32) * f32::EPSILON;
            if (norm - 1.0).abs() <= rounding {
                return v;
            }
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
    fn cosine_preprocessing_is_idempotent_bit_for_bit() {
        let mut seed: u64 = 0x1234_5678;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        for dim in [1usize, 2, 3, 7, 64, 128, 384, 1536] {
            for _ in 0..50 {
                let scale = 10f32.powi((next() * 6.0) as i32);
                let v: Vec<f32> = (0..dim).map(|_| next() * scale).collect();
                let once = Distance::Cosine.preprocess(v);
                let twice = Distance::Cosine.preprocess(once.clone());
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&once), bits(&twice), "dim {dim}");
            }
        }
    }

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
