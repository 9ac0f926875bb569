//! Helpers shared by the integration tests of this crate (each test file that needs them
//! declares `mod common;`; not every file uses every helper).
#![allow(dead_code)]

/// xorshift64*: reproducible random data without a rand dependency.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (up to a negligible modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `dict` saved twice in `dir` as `.fdict` (names `new` and `old`), the second without its
/// `example_tokens` table, as files written before that table existed; both opened.
pub fn fdict_with_and_without_example_tokens(
    dict: &feature_dictionary::FeatureDictionary,
    dir: &std::path::Path,
    new: &str,
) -> [feature_dictionary::store::fdict::FdictReader; 2] {
    use feature_dictionary::store::{self, fdict::FdictReader};
    let path = dir.join(new);
    store::save(dict, &path).unwrap();
    let old = dir.join("old.fdict");
    store::save(dict, &old).unwrap();
    FdictReader::open_rw(&old)
        .unwrap()
        .connection()
        .execute_batch("DROP TABLE example_tokens")
        .unwrap();
    [
        FdictReader::open(&path).unwrap(),
        FdictReader::open(&old).unwrap(),
    ]
}
