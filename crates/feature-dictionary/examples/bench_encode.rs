//! Encode throughput of an SAE on a residual file, for BENCHMARKS.md (run by
//! scripts/bench_encode.py, which measures numpy on the same shapes in the same run).
//!
//! `cargo run --release --example bench_encode -- SAE_DIR RESIDUALS.npy [REPEATS]`
//! prints one JSON line: the best wall time of a full encode (matrix multiply + activation
//! + sparsification) and its GFLOP/s counted as 2·tokens·d_in·d_sae.

use std::path::Path;
use std::time::Instant;

use feature_dictionary::ingest::{self, SparseRows};
use feature_dictionary::sae::{EncodeBuffers, Sae};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: bench_encode SAE_DIR RESIDUALS.npy [REPEATS]".into());
    }
    let sae = Sae::load(Path::new(&args[1]))?;
    let m = ingest::open_dense(Path::new(&args[2]))?;
    let repeats: usize = args.get(3).map_or(Ok(5), |r| r.parse())?;
    let mut buf = Vec::new();
    let x = m.rows_f32(0..m.n_rows(), &mut buf).to_vec();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut buffers = EncodeBuffers::default();
    let mut best = f64::INFINITY;
    let mut nnz = 0;
    for _ in 0..repeats + 1 {
        let mut rows = SparseRows::default();
        let t = Instant::now();
        sae.encode(&x, &mut rows, &mut buffers, threads);
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        nnz = rows.values.len();
    }
    let flops = 2.0 * m.n_rows() as f64 * sae.d_in() as f64 * sae.d_sae() as f64;
    // The bare multiply alone (random weights of the same shape), in the encoder's blocks,
    // to show how much of an encode is the matmul.
    let (n, k, d) = (m.n_rows() as usize, sae.d_in(), sae.d_sae());
    let w: Vec<f32> = (0..k * d)
        .map(|i| ((i % 97) as f32 - 48.0) / 97.0)
        .collect();
    let block = sae.block_rows().min(n);
    let mut out = vec![0f32; block * d];
    let mut best_mm = f64::INFINITY;
    for _ in 0..repeats + 1 {
        let t = Instant::now();
        for xb in x.chunks(block * k) {
            let rows = xb.len() / k;
            // SAFETY: out is block × d, xb rows × k, w k × d, all row-major.
            unsafe {
                gemm::gemm(
                    rows,
                    d,
                    k,
                    out.as_mut_ptr(),
                    1,
                    d as isize,
                    false,
                    xb.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    1,
                    d as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                );
            }
        }
        best_mm = best_mm.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{{\"tokens\": {}, \"d_in\": {}, \"d_sae\": {}, \"threads\": {threads}, \"block_rows\": {}, \"seconds\": {best:.6}, \"gflops\": {:.2}, \"matmul_seconds\": {best_mm:.6}, \"matmul_gflops\": {:.2}, \"nnz\": {nnz}}}",
        m.n_rows(),
        sae.d_in(),
        sae.d_sae(),
        sae.block_rows(),
        flops / best / 1e9,
        flops / best_mm / 1e9
    );
    Ok(())
}
