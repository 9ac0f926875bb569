//! Similar features.
//!
//! * With an SAE: cosine of decoder directions (rows of `W_dec`, `[d_sae, d_in]` in SAELens
//!   files). All-pairs neighbours use a blocked GEMM (rows normalised once, then
//!   `BLOCK × F` tiles of the Gram matrix from the `gemm` crate, each tile reduced to
//!   per-row top-k before the next), so memory is `BLOCK × F` floats, never `F × F`; blocks
//!   run on `threads` threads.
//! * Without one: cosine of the features' firing-token count vectors (`top_tokens`), which
//!   measures "fires on the same tokens" over the whole corpus (the original used a Jaccard
//!   index over the tokens of the top-20 examples).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::weights::{read_weight_matrix, Matrix};
use crate::dictionary::FeatureDictionary;
use crate::error::{Error, Result};
use crate::model::Feature;

/// Rows per GEMM block.
const BLOCK: usize = 256;

/// Decoder directions of an SAE, one unit-normalised row per feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Directions {
    /// `[features, d]`, rows of norm 1 (zero rows stay zero).
    pub unit: Matrix,
    /// The file and tensor the rows came from, for errors about a row.
    source: Option<(PathBuf, String)>,
}

/// The neighbours of one feature by decoder cosine.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    /// `(feature, cosine)`, best first, ties by smaller id.
    pub similar: Vec<(u32, f32)>,
    /// Features left out because their decoder row is all zeros: with no direction, their
    /// cosine with everything would be a meaningless 0.
    pub zero_rows_skipped: usize,
}

impl Directions {
    /// Rows of `m` normalised.
    pub fn new(mut m: Matrix) -> Self {
        let cols = m.cols;
        for row in m.data.chunks_exact_mut(cols.max(1)) {
            let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v = (*v as f64 / norm) as f32);
            }
        }
        Self {
            unit: m,
            source: None,
        }
    }

    /// Loads tensor `name` (e.g. `W_dec`) from a safetensors or `.npz` file (see
    /// [`read_weight_matrix`]; every value finite);
    /// `n_features` (when known) picks the orientation: a `[d, F]` tensor is transposed.
    /// Errors about a row then name the file and tensor.
    pub fn load(path: &Path, name: &str, n_features: Option<usize>) -> Result<Self> {
        let m = read_weight_matrix(path, name)?;
        let m = match n_features {
            Some(f) if m.rows == f => m,
            Some(f) if m.cols == f => m.transposed(),
            Some(f) => {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {name:?} is {}×{}; neither dimension matches the dictionary's {f} features",
                        m.rows, m.cols
                    ),
                ))
            }
            None => m,
        };
        Ok(Self {
            source: Some((path.to_path_buf(), name.to_string())),
            ..Self::new(m)
        })
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.unit.rows
    }

    /// Whether there are no features.
    pub fn is_empty(&self) -> bool {
        self.unit.rows == 0
    }

    /// Whether feature `i`'s row is all zeros (no direction).
    fn is_zero(&self, i: usize) -> bool {
        self.unit.row(i).iter().all(|&v| v == 0.0)
    }

    /// The `k` features whose directions are closest to feature `id` (self excluded), and
    /// how many features were left out for having an all-zero row. An `id` beyond the rows,
    /// or whose own row is all zeros, is an error.
    pub fn similar_to(&self, id: usize, k: usize) -> Result<Neighbours> {
        if id >= self.len() {
            return Err(self.error(format!(
                "feature {id} has no decoder row (there are {} rows)",
                self.len()
            )));
        }
        if self.is_zero(id) {
            return Err(self.error(format!(
                "feature {id}'s decoder row is all zeros: it has no direction to compare"
            )));
        }
        let q = self.unit.row(id);
        let mut zero_rows_skipped = 0;
        let scores: Vec<f32> = (0..self.len())
            .map(|j| {
                if self.is_zero(j) {
                    zero_rows_skipped += 1;
                    // top_k leaves non-finite scores out.
                    f32::NAN
                } else {
                    dot(q, self.unit.row(j))
                }
            })
            .collect();
        Ok(Neighbours {
            similar: top_k(&scores, id, k),
            zero_rows_skipped,
        })
    }

    /// An error about this matrix, naming its file and tensor when it was loaded from one.
    fn error(&self, message: String) -> Error {
        match &self.source {
            Some((path, name)) => Error::format(path, format!("tensor {name:?}: {message}")),
            None => Error::Invalid(message),
        }
    }

    /// Every feature's `k` nearest neighbours by cosine (self excluded), best first,
    /// ties by smaller id.
    ///
    /// The Gram matrix is symmetric, so only its upper part is computed: block `b` (rows
    /// `r0..r0 + BLOCK`) is multiplied with rows `r0..F` only, and each score feeds both the
    /// row's and the column's bounded top-k list — half the flops of the full product.
    /// Blocks are dealt round-robin to threads (later blocks are shorter); each thread keeps
    /// its own top-k lists, merged at the end.
    ///
    /// A feature whose row is all zeros has no direction: it gets no neighbours and is no
    /// one's neighbour (its cosine of 0 with everything would rank it among the nearest of
    /// features that have no closer partner).
    pub fn all_neighbours(&self, k: usize, threads: usize) -> Vec<Vec<(u32, f32)>> {
        let n = self.len();
        let d = self.unit.cols;
        if n == 0 || k == 0 {
            return vec![Vec::new(); n];
        }
        let zero: Vec<bool> = (0..n).map(|i| self.is_zero(i)).collect();
        let zero = &zero;
        let n_blocks = n.div_ceil(BLOCK);
        let threads = threads.clamp(1, n_blocks);
        let a = &self.unit.data;
        let partials: Vec<Vec<TopRow>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let mut rows = vec![TopRow::default(); n];
                        let mut tile = vec![0f32; BLOCK * n];
                        for b in (t..n_blocks).step_by(threads) {
                            let r0 = b * BLOCK;
                            let rows_b = BLOCK.min(n - r0);
                            let cols = n - r0;
                            // tile[rows_b × cols] = U[r0..r0+rows_b] · U[r0..n]ᵀ
                            // SAFETY: both operands are in-bounds row-major views of `a`
                            // (rows r0.., d columns); Uᵀ is read with row stride 1 and
                            // column stride d; `tile` holds rows_b × cols values and is
                            // not read (read_dst = false).
                            unsafe {
                                gemm::gemm(
                                    rows_b,
                                    cols,
                                    d,
                                    tile.as_mut_ptr(),
                                    1,
                                    cols as isize,
                                    false,
                                    a[r0 * d..].as_ptr(),
                                    1,
                                    d as isize,
                                    a[r0 * d..].as_ptr(),
                                    d as isize,
                                    1,
                                    0.0,
                                    1.0,
                                    false,
                                    false,
                                    false,
                                    gemm::Parallelism::None,
                                );
                            }
                            for r in 0..rows_b {
                                let i = r0 + r;
                                let line = &tile[r * cols..(r + 1) * cols];
                                for (c, &s) in line.iter().enumerate() {
                                    let j = r0 + c;
                                    // A zero row scores exactly 0 with every row, so
                                    // only such scores need the (rarely true) row test.
                                    if j == i
                                        || !s.is_finite()
                                        || (s == 0.0 && (zero[i] || zero[j]))
                                    {
                                        continue;
                                    }
                                    rows[i].offer(k, s, j as u32);
                                    // Pairs inside the diagonal block are computed both ways.
                                    if c >= rows_b {
                                        rows[j].offer(k, s, i as u32);
                                    }
                                }
                            }
                        }
                        rows
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("neighbour thread panicked"))
                .collect()
        });
        let mut partials = partials.into_iter();
        let mut out = partials.next().expect("at least one thread");
        for p in partials {
            for (mine, theirs) in out.iter_mut().zip(p) {
                for (s, j) in theirs.items {
                    mine.offer(k, s, j);
                }
            }
        }
        out.into_iter()
            .map(|r| r.items.into_iter().map(|(s, j)| (j, s)).collect())
            .collect()
    }
}

/// A bounded best-first list: score desc, then id asc.
#[derive(Debug, Clone, Default)]
struct TopRow {
    items: Vec<(f32, u32)>,
}

impl TopRow {
    #[inline(always)]
    fn offer(&mut self, k: usize, s: f32, j: u32) {
        if self.items.len() == k {
            let (ls, lj) = self.items[k - 1];
            if s < ls || (s == ls && j > lj) {
                return;
            }
            self.items.pop();
        }
        let pos = self
            .items
            .partition_point(|&(x, y)| x > s || (x == s && y < j));
        self.items.insert(pos, (s, j));
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Key in `Feature.metadata` of the stored decoder-cosine neighbours
/// (`[[id, cosine], …]`, best first), which a `.fdict` and `featdict serve` show as similar
/// features.
pub const SIMILAR_KEY: &str = "similar_features";

/// The decoder-cosine neighbours a `build --sae` stored for `f` (best first; empty when it
/// stored none).
pub fn stored_neighbours(f: &crate::model::Feature) -> Vec<(u64, f64)> {
    crate::store::fdict::neighbours_in(&f.metadata, SIMILAR_KEY)
}

/// Stores every feature's `k` nearest decoder directions ([`Directions::all_neighbours`])
/// in its metadata under [`SIMILAR_KEY`]; returns how many features got some.
pub fn store_neighbours(
    dict: &mut FeatureDictionary,
    dirs: &Directions,
    k: usize,
    threads: usize,
) -> usize {
    let all = dirs.all_neighbours(k, threads);
    let mut stored = 0;
    for f in dict.feature_set.features.values_mut() {
        let Some(list) = all.get(f.id as usize).filter(|l| !l.is_empty()) else {
            continue;
        };
        let pairs: Vec<(u32, f64)> = list.iter().map(|&(j, c)| (j, c as f64)).collect();
        f.metadata.extra.insert(
            SIMILAR_KEY.into(),
            serde_json::to_value(pairs).expect("pairs serialize"),
        );
        stored += 1;
    }
    stored
}

/// Best `k` of `scores` except index `skip`: score desc, then index asc.
pub fn top_k(scores: &[f32], skip: usize, k: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = scores
        .iter()
        .enumerate()
        .filter(|(j, s)| *j != skip && s.is_finite())
        // `+ 0.0` makes a −0.0 (a sum of negative zeros) +0.0, so it ties with the other
        // zeros by index instead of ranking below them under `total_cmp`.
        .map(|(j, &s)| (j as u32, s + 0.0))
        .collect();
    let cmp = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if v.len() > k && k > 0 {
        v.select_nth_unstable_by(k - 1, cmp);
        v.truncate(k);
    }
    v.sort_by(cmp);
    v.truncate(k);
    v
}

/// Cosine of two features' firing-token count vectors.
pub fn token_profile_cosine(a: &Feature, b: &Feature) -> f64 {
    let ma: HashMap<&str, f64> = a
        .metadata
        .top_tokens
        .iter()
        .map(|t| (t.token.as_str(), t.firings as f64))
        .collect();
    let na = ma.values().map(|v| v * v).sum::<f64>().sqrt();
    let mut nb = 0.0;
    let mut dotp = 0.0;
    for t in &b.metadata.top_tokens {
        let v = t.firings as f64;
        nb += v * v;
        if let Some(x) = ma.get(t.token.as_str()) {
            dotp += x * v;
        }
    }
    let den = na * nb.sqrt();
    if den > 0.0 {
        dotp / den
    } else {
        0.0
    }
}

/// The `k` features firing on the most similar tokens to feature `id` (cosine of token
/// profiles), best first, ties by id.
pub fn similar_by_tokens(dict: &FeatureDictionary, id: u64, k: usize) -> Result<Vec<(u64, f64)>> {
    let f = dict
        .get(id)
        .ok_or_else(|| Error::Invalid(format!("feature {id} is not in the dictionary")))?;
    let mut v: Vec<(u64, f64)> = dict
        .features()
        .filter(|g| g.id != id && g.activation_count > 0)
        .map(|g| (g.id, token_profile_cosine(f, g)))
        .filter(|p| p.1 > 0.0)
        .collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(k);
    Ok(v)
}

#[cfg(test)]
mod top_k_tests {
    use super::top_k;

    #[test]
    fn negative_zero_ties_with_zero_by_index() {
        // Index 0 scores −0.0 (e.g. a dot product of negative zeros): a zero like index 2's,
        // so the tie goes to the smaller index.
        let scores = [-0.0f32, 1.0, 0.0, -1.0, f32::NAN];
        assert_eq!(
            top_k(&scores, usize::MAX, 3),
            vec![(1, 1.0), (0, 0.0), (2, 0.0)]
        );
        assert!(top_k(&scores, usize::MAX, 3)[1].1.is_sign_positive());
        assert_eq!(top_k(&scores, 1, 2), vec![(0, 0.0), (2, 0.0)]);
    }
}
