//! The read floor: how fast this machine can merely read a page-cached float32 `.npy`
//! activation file and count its firings (values ≥ 0.01), with no statistics at all.
//!
//! Any streaming pass over the file is bounded by this number, so the benchmark prints it
//! next to the pass (`scripts/bench_core.py`). Three ways of reading, each on `THREADS`
//! threads:
//!
//! * `mmap-columns` — the file memory-mapped, each thread reading its share of the features
//!   of every row (how `featdict build` splits the work: by feature range);
//! * `mmap-rows` — the file memory-mapped, each thread reading its share of the rows;
//! * `pread` — each thread copying its share of the rows with `pread` into a reused 2 MiB
//!   buffer (stays in L2) and counting there.
//!
//! `cargo run --release --example read_floor -- ACTS.npy [THREADS] [REPEATS]` prints one
//! line per way, `way tokens_per_second` (the best of REPEATS), then the firings counted.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use feature_dictionary::ingest::npy;

const THRESHOLD: f32 = 0.01;
const PREAD_BUFFER_BYTES: usize = 2 << 20;

/// Firings in `values`. Sixteen independent counters keep the compare-and-add vectorized.
fn count_firings(values: &[f32]) -> u64 {
    let mut lanes = [0u32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += (v >= THRESHOLD) as u32;
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .filter(|&&v| v >= THRESHOLD)
        .count();
    lanes.iter().map(|&c| c as u64).sum::<u64>() + tail as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 {
        return Err("usage: read_floor ACTS.npy [THREADS] [REPEATS]".into());
    }
    let path = Path::new(&args[1]);
    let threads: usize = args.get(2).map_or(Ok(2), |t| t.parse())?;
    let repeats: usize = args.get(3).map_or(Ok(3), |t| t.parse())?;
    let mut head = vec![0u8; 4096];
    let n = File::open(path)?.read(&mut head)?;
    let header = npy::parse_header(path, &head[..n])?;
    if header.descr != "<f4" || header.fortran_order || header.shape.len() != 2 {
        return Err(format!(
            "{}: expected a C-order float32 [tokens, features] array, found {:?} {:?}",
            path.display(),
            header.descr,
            header.shape
        )
        .into());
    }
    let (rows, cols) = (header.shape[0] as usize, header.shape[1] as usize);
    let offset = header.data_offset;
    let file = File::open(path)?;
    let mut firings = 0;
    for way in ["mmap-columns", "mmap-rows", "pread"] {
        let mut best = f64::INFINITY;
        for _ in 0..repeats {
            let start = Instant::now();
            firings = match way {
                "pread" => read_pread(&file, offset, rows, cols, threads)?,
                _ => {
                    // SAFETY: read-only map of a file nobody writes during the benchmark.
                    let map = unsafe { memmap2::Mmap::map(&file)? };
                    let bytes = &map[offset..offset + rows * cols * 4];
                    let values: &[f32] = bytemuck_f32(bytes);
                    read_mapped(values, rows, cols, threads, way == "mmap-columns")
                }
            };
            best = best.min(start.elapsed().as_secs_f64());
        }
        println!("{way} {:.0}", rows as f64 / best);
    }
    println!("firings {firings}");
    Ok(())
}

/// The mapped bytes as f32 (an `.npy` data section is 4-byte aligned in a page-aligned map).
fn bytemuck_f32(bytes: &[u8]) -> &[f32] {
    assert!((bytes.as_ptr() as usize).is_multiple_of(4) && bytes.len().is_multiple_of(4));
    // SAFETY: alignment and length checked; every bit pattern is a valid f32.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 4) }
}

fn read_mapped(values: &[f32], rows: usize, cols: usize, threads: usize, by_columns: bool) -> u64 {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    if by_columns {
                        let (a, b) = (t * cols / threads, (t + 1) * cols / threads);
                        (0..rows)
                            .map(|r| count_firings(&values[r * cols + a..r * cols + b]))
                            .sum::<u64>()
                    } else {
                        let (a, b) = (t * rows / threads, (t + 1) * rows / threads);
                        count_firings(&values[a * cols..b * cols])
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

fn read_pread(
    file: &File,
    offset: usize,
    rows: usize,
    cols: usize,
    threads: usize,
) -> std::io::Result<u64> {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> std::io::Result<u64> {
                    let (a, b) = (t * rows / threads, (t + 1) * rows / threads);
                    let chunk_rows = (PREAD_BUFFER_BYTES / (cols * 4)).max(1);
                    let mut buffer = vec![0f32; chunk_rows * cols];
                    let mut firings = 0;
                    let mut row = a;
                    while row < b {
                        let n = chunk_rows.min(b - row);
                        let values = &mut buffer[..n * cols];
                        // SAFETY: a f32 slice viewed as its bytes, for the read to fill.
                        let bytes = unsafe {
                            std::slice::from_raw_parts_mut(
                                values.as_mut_ptr().cast::<u8>(),
                                values.len() * 4,
                            )
                        };
                        file.read_exact_at(bytes, (offset + row * cols * 4) as u64)?;
                        firings += count_firings(values);
                        row += n;
                    }
                    Ok(firings)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}
