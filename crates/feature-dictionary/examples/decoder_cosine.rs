//! Times all-pairs decoder-cosine neighbours (`analyze::similar::Directions::all_neighbours`)
//! on a random `[F, d]` matrix. Usage: `decoder_cosine F D K THREADS` (defaults 24576 768 10
//! all cores). Prints one JSON line. See BENCHMARKS.md (scripts/bench_decoder_cosine.sh).

use feature_dictionary::analyze::similar::Directions;
use feature_dictionary::analyze::weights::Matrix;

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let f = args.first().copied().unwrap_or(24_576);
    let d = args.get(1).copied().unwrap_or(768);
    let k = args.get(2).copied().unwrap_or(10);
    let threads = args
        .get(3)
        .copied()
        .unwrap_or_else(feature_dictionary::build::default_threads);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let data: Vec<f32> = (0..f * d)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let dirs = Directions::new(Matrix {
        rows: f,
        cols: d,
        data,
    });
    let t = std::time::Instant::now();
    let nn = dirs.all_neighbours(k, threads);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(nn.len(), f);
    println!(
        "{{\"impl\": \"rust\", \"features\": {f}, \"d\": {d}, \"k\": {k}, \"threads\": {threads}, \"seconds\": {secs:.3}}}"
    );
}
