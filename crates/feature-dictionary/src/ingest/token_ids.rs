//! Token ids (`.npy` int32/int64 `[sequences, seq_len]`, or a delphi cache's `tokens`
//! tensor) turned into [`TokenSequences`] whose vocabulary is the tokenizer's, with ids
//! that decode to the same string pooled under one id.

use std::path::Path;

use memmap2::UncheckedAdvice;
use rustc_hash::FxHashMap;

use super::npy::NpyHeader;
use super::safetensors::le_int;
use super::{TokenId, TokenSequences, Vocab};
use crate::error::{Error, Result};

/// A `[sequences, seq_len]` matrix of token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdMatrix {
    /// Ids, row after row.
    pub ids: Vec<TokenId>,
    /// Number of sequences (rows).
    pub n_sequences: u64,
    /// Tokens per sequence (columns).
    pub seq_len: u64,
}

impl TokenIdMatrix {
    /// Checks shape and converts ids, rejecting negative or > u32 ids.
    pub fn from_i64(path: &Path, values: impl Iterator<Item = i64>, shape: &[u64]) -> Result<Self> {
        let (n_sequences, seq_len) = match *shape {
            [s, l] => (s, l),
            _ => {
                return Err(Error::format(
                    path,
                    format!("token ids have shape {shape:?}; expected [sequences, seq_len]"),
                ))
            }
        };
        if seq_len == 0 && n_sequences > 0 {
            return Err(Error::format(
                path,
                format!("token ids have shape {shape:?}: sequences of length 0"),
            ));
        }
        let mut ids = Vec::new();
        for (i, v) in values.enumerate() {
            let id =
                u32::try_from(v).map_err(|_| invalid_id(path, v as i128, i as u64, seq_len))?;
            ids.push(id);
        }
        if n_sequences.checked_mul(seq_len) != Some(ids.len() as u64) {
            return Err(Error::format(
                path,
                format!("token ids have shape {shape:?} but {} values", ids.len()),
            ));
        }
        Ok(Self {
            ids,
            n_sequences,
            seq_len,
        })
    }

    /// Reads an `.npy` of int32/int64 (or uint16/uint32) token ids.
    pub fn from_npy(path: &Path) -> Result<Self> {
        let map = super::dense::map_file_expecting(path, "a NumPy .npy array of token ids")?;
        Self::from_npy_bytes(path, &map)
    }

    /// Parses `.npy` bytes already in memory.
    pub fn from_npy_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let (h, size, signed) = id_layout(path, bytes)?;
        let data = &bytes[h.data_offset..];
        // Fortran order (`np.save` of a transposed array): reordered into C order here, so
        // what follows (and its error locations) sees `[sequences, seq_len]` row by row.
        let c_order;
        let data = match *h.shape.as_slice() {
            [n_seq, seq_len] if h.fortran_order => {
                c_order = fortran_to_c_order(data, n_seq as usize, seq_len as usize, size);
                &c_order[..]
            }
            _ => data,
        };
        if size == 8 && !signed {
            // Mapped to i64 below, a huge uint64 would be reported as some other number.
            if let Some((i, v)) = data
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .enumerate()
                .find(|&(_, v)| v > u32::MAX as u64)
            {
                let l = h.shape.get(1).copied().unwrap_or(1).max(1);
                return Err(invalid_id(path, v as i128, i as u64, l));
            }
        }
        let values = data.chunks_exact(size).map(|c| le_int(c, signed) as i64);
        Self::from_i64(path, values, &h.shape)
    }

    /// Pairs the ids with `vocab` (a tokenizer's, ids = tokenizer ids). Without one, each
    /// token is shown as its id in brackets, e.g. `[1024]`.
    ///
    /// Ids that decode to the same string become one id, the smallest
    /// ([`TokenSequences::new`]); this matrix keeps the ids as given.
    pub fn into_sequences(self, path: &Path, vocab: Option<Vocab>) -> Result<TokenSequences> {
        let vocab = match vocab {
            Some(v) => {
                if let Some((i, &bad)) = self
                    .ids
                    .iter()
                    .enumerate()
                    .find(|(_, &id)| id as usize >= v.len())
                {
                    return Err(outside_vocab(path, bad, i as u64, self.seq_len, v.len()));
                }
                v
            }
            None => {
                // Only the ids that occur get a string (ids may be as large as u32::MAX).
                let mut vocab = Vocab::new();
                let mut ids = self.ids;
                for id in &mut ids {
                    *id = vocab.intern(&format!("[{id}]"));
                }
                let lengths = vec![self.seq_len; self.n_sequences as usize];
                return Ok(TokenSequences::new(path, vocab, ids, &lengths));
            }
        };
        let lengths = vec![self.seq_len; self.n_sequences as usize];
        Ok(TokenSequences::new(path, vocab, self.ids, &lengths))
    }
}

/// The header of a token-id `.npy`, its element size and signedness, after checking the
/// dtype and that the data is exactly as long as the shape says.
fn id_layout(path: &Path, bytes: &[u8]) -> Result<(NpyHeader, usize, bool)> {
    let h = super::npy::parse_header(path, bytes)?;
    let (size, signed) = match h.descr.as_str() {
        "<i4" => (4, true),
        "<i8" => (8, true),
        "<u4" => (4, false),
        "<u2" | "|u2" => (2, false),
        "<u8" => (8, false),
        other => {
            return Err(Error::format(
                path,
                format!("token ids have dtype {other}; expected little-endian int32, int64, uint16, uint32 or uint64 (<i4, <i8, <u2, <u4, <u8)"),
            ))
        }
    };
    let n = h
        .shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(size as u64));
    let data = &bytes[h.data_offset..];
    if n != Some(data.len() as u64) {
        return Err(Error::format(
            path,
            format!(
                "token id file is truncated or has trailing bytes: shape {:?} of {} needs {} data bytes but {} follow the header",
                h.shape,
                h.descr,
                n.map_or("an absurd number of".to_string(), |n| n.to_string()),
                data.len()
            ),
        ));
    }
    Ok((h, size, signed))
}

/// The error of an id outside 0..=u32::MAX at flat index `i` of rows of `seq_len`.
fn invalid_id(path: &Path, v: i128, i: u64, seq_len: u64) -> Error {
    let l = seq_len.max(1);
    Error::format(
        path,
        format!(
            "token id {v} at sequence {}, position {} is not a valid id; expected ids from 0 to {}",
            i / l,
            i % l,
            u32::MAX
        ),
    )
}

/// The error of an id that `vocab` (`n_vocab` ids) does not have.
fn outside_vocab(path: &Path, id: u32, i: u64, seq_len: u64, n_vocab: usize) -> Error {
    let l = seq_len.max(1);
    Error::format(
        path,
        format!(
            "token id {id} at sequence {}, position {} is outside the tokenizer's vocabulary of {n_vocab} ids — is it the model's tokenizer?",
            i / l,
            i % l,
        ),
    )
}

/// Token ids checked per step when a C-order file is opened by [`open_npy`] (their pages
/// are dropped after each step, so the check does not leave the file resident).
const CHECK_IDS: usize = 1 << 20;

/// Opens a token-id `.npy` (`[sequences, seq_len]`) for a build, with `vocab` (a
/// tokenizer's) or, without one, each id shown as `[id]`.
///
/// Every id is checked here, with the errors of [`TokenIdMatrix::from_npy`] and
/// [`TokenIdMatrix::into_sequences`]. A C-order file is then read batch by batch as the
/// build asks for rows ([`TokenSequences::ids`]), so its ids are never all in memory; a
/// Fortran-order file is reordered into memory whole, and a pipe is kept there.
pub fn open_npy(path: &Path, vocab: Option<Vocab>) -> Result<TokenSequences> {
    let map = super::dense::map_file_expecting(path, "a NumPy .npy array of token ids")?;
    let (h, size, signed) = id_layout(path, &map)?;
    // A pipe or FIFO was read into memory whole and cannot be read again by position (nor
    // opened again: a FIFO would wait for a writer): its ids are kept in memory, as a
    // Fortran-order file's are.
    let stream = !std::fs::metadata(path).is_ok_and(|m| m.is_file());
    if h.fortran_order || stream {
        return TokenIdMatrix::from_npy_bytes(path, &map)?.into_sequences(path, vocab);
    }
    let (n_sequences, seq_len) = match *h.shape.as_slice() {
        [s, l] => (s, l),
        _ => {
            return Err(Error::format(
                path,
                format!(
                    "token ids have shape {:?}; expected [sequences, seq_len]",
                    h.shape
                ),
            ))
        }
    };
    if seq_len == 0 && n_sequences > 0 {
        return Err(Error::format(
            path,
            format!("token ids have shape {:?}: sequences of length 0", h.shape),
        ));
    }
    let data = &map[h.data_offset..];
    let mut check = IdCheck::new(path, vocab, seq_len);
    for (step, chunk) in data.chunks(CHECK_IDS * size).enumerate() {
        for (j, bytes) in chunk.chunks_exact(size).enumerate() {
            check.id((step * CHECK_IDS + j) as u64, le_int(bytes, signed))?;
        }
        let end = (chunk.as_ptr() as usize - map.as_ptr() as usize + chunk.len()) & !4095;
        // SAFETY: a read-only shared file mapping; dropping pages only makes later reads
        // fault them back in from the file.
        let _ = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, 0, end) };
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (vocab, remap) = check.finish();
    let ids = IdReader {
        source: IdBytes::File {
            file,
            data_offset: h.data_offset as u64,
        },
        size,
        signed,
        n_vocab: vocab.len(),
        remap,
    };
    let lengths = vec![seq_len; n_sequences as usize];
    Ok(TokenSequences::from_id_reader(path, vocab, &lengths, ids))
}

/// Token sequences whose ids are read, as batches ask for rows, from integer tensor
/// `tensor` (`[sequences, seq_len]`, C order) of `file` (a delphi cache's `tokens`), with
/// `vocab` (a tokenizer's) or, without one, each id shown as `[id]`. Every id is checked
/// here, as [`open_npy`] checks a file's.
pub fn tensor_sequences(
    file: std::sync::Arc<super::safetensors::SafeTensors>,
    tensor: &super::safetensors::TensorInfo,
    vocab: Option<Vocab>,
) -> Result<TokenSequences> {
    let path = file.path().to_path_buf();
    let reader = super::safetensors::IntReader::new(&path, tensor, file.bytes(tensor))?;
    let (n_sequences, seq_len) = match *tensor.shape.as_slice() {
        [s, l] if l > 0 || s == 0 => (s, l),
        _ => {
            return Err(Error::format(
                &path,
                format!(
                    "tensor {:?} has shape {:?}; expected [sequences, seq_len] with seq_len > 0",
                    tensor.name, tensor.shape
                ),
            ))
        }
    };
    let (size, signed) = (reader.element_size(), reader.is_signed());
    let mut check = IdCheck::new(&path, vocab, seq_len);
    for i in 0..reader.len() {
        check.id(i as u64, le_int(reader.element_bytes(i), signed))?;
    }
    let (vocab, remap) = check.finish();
    let ids = IdReader {
        source: IdBytes::Tensor {
            file: file.clone(),
            tensor: tensor.clone(),
        },
        size,
        signed,
        n_vocab: vocab.len(),
        remap,
    };
    let lengths = vec![seq_len; n_sequences as usize];
    Ok(TokenSequences::from_id_reader(&path, vocab, &lengths, ids))
}

/// Checks ids one by one (each a valid id of the vocabulary, or, without one, interned as
/// `[id]`), then gives the vocabulary and how to map the ids read later.
struct IdCheck<'a> {
    path: &'a Path,
    seq_len: u64,
    vocab: Option<Vocab>,
    n_vocab: usize,
    interned: Option<(Vocab, FxHashMap<u32, TokenId>)>,
}

impl<'a> IdCheck<'a> {
    fn new(path: &'a Path, vocab: Option<Vocab>, seq_len: u64) -> Self {
        Self {
            path,
            seq_len,
            n_vocab: vocab.as_ref().map_or(0, Vocab::len),
            interned: vocab.is_none().then(Default::default),
            vocab,
        }
    }

    /// Checks id `v`, element `i` of the array.
    #[inline]
    fn id(&mut self, i: u64, v: i128) -> Result<()> {
        let id = u32::try_from(v).map_err(|_| invalid_id(self.path, v, i, self.seq_len))?;
        match &mut self.interned {
            Some((names, ids)) => {
                ids.entry(id)
                    .or_insert_with(|| names.intern(&format!("[{id}]")));
            }
            None if id as usize >= self.n_vocab => {
                return Err(outside_vocab(self.path, id, i, self.seq_len, self.n_vocab))
            }
            None => {}
        }
        Ok(())
    }

    fn finish(self) -> (Vocab, IdRemap) {
        match (self.vocab, self.interned) {
            (_, Some((names, ids))) => (names, IdRemap::Interned(ids)),
            (Some(v), None) if v.has_shared_strings() => {
                let canonical = v.canonical_ids();
                (v, IdRemap::Canonical(canonical))
            }
            (Some(v), None) => (v, IdRemap::AsIs),
            (None, None) => unreachable!("interned is Some exactly when there is no vocabulary"),
        }
    }
}

/// How ids read from a file become the ids batches carry.
#[derive(Debug)]
enum IdRemap {
    /// Unchanged (a tokenizer vocabulary whose strings are all distinct).
    AsIs,
    /// To their string's canonical id ([`Vocab::canonical_ids`]).
    Canonical(Vec<TokenId>),
    /// To the id of their `[id]` name (no tokenizer).
    Interned(FxHashMap<u32, TokenId>),
}

/// Where an [`IdReader`]'s bytes are.
#[derive(Debug)]
enum IdBytes {
    /// In a file (a token-id `.npy`), read with `pread` so nothing stays mapped.
    File {
        file: std::fs::File,
        data_offset: u64,
    },
    /// A tensor of a safetensors file that stays mapped anyway (a delphi cache shard).
    Tensor {
        file: std::sync::Arc<super::safetensors::SafeTensors>,
        tensor: super::safetensors::TensorInfo,
    },
}

/// A C-order `[sequences, seq_len]` id array whose every id has been checked, read row range
/// by row range.
#[derive(Debug)]
pub(super) struct IdReader {
    source: IdBytes,
    size: usize,
    signed: bool,
    remap: IdRemap,
    n_vocab: usize,
}

impl IdReader {
    /// The batch ids of `rows` (flat indices into the array).
    pub(super) fn read(&self, path: &Path, rows: std::ops::Range<u64>) -> Result<Vec<TokenId>> {
        let (a, b) = (
            rows.start as usize * self.size,
            rows.end as usize * self.size,
        );
        let read;
        let bytes = match &self.source {
            IdBytes::File { file, data_offset } => {
                let mut buf = vec![0u8; b - a];
                super::tokens_json::read_at(file, &mut buf, data_offset + a as u64)
                    .map_err(|e| Error::io(path, e))?;
                read = buf;
                &read[..]
            }
            IdBytes::Tensor { file, tensor } => &file.bytes(tensor)[a..b],
        };
        let changed = |row: u64| {
            Error::format(
                path,
                format!("the token id at row {row} is not the one checked when the file was opened; was the file changed during the build?"),
            )
        };
        let mut ids = Vec::with_capacity(bytes.len() / self.size);
        for (j, b) in bytes.chunks_exact(self.size).enumerate() {
            let row = rows.start + j as u64;
            let id = u32::try_from(le_int(b, self.signed)).map_err(|_| changed(row))?;
            let id = match &self.remap {
                IdRemap::AsIs => ((id as usize) < self.n_vocab).then_some(id),
                IdRemap::Canonical(c) => c.get(id as usize).copied(),
                IdRemap::Interned(m) => m.get(&id).copied(),
            };
            ids.push(id.ok_or_else(|| changed(row))?);
        }
        Ok(ids)
    }
}

/// The bytes of a Fortran-order `[n_seq, seq_len]` array of `size`-byte elements (element
/// `(s, l)` at `s + n_seq·l`) in C order (at `s·seq_len + l`).
fn fortran_to_c_order(data: &[u8], n_seq: usize, seq_len: usize, size: usize) -> Vec<u8> {
    if data.is_empty() {
        // A shape such as (2**60, 0) holds nothing; don't loop over its sequences.
        return Vec::new();
    }
    let mut out = Vec::with_capacity(data.len());
    for s in 0..n_seq {
        for l in 0..seq_len {
            let at = (s + n_seq * l) * size;
            out.extend_from_slice(&data[at..at + size]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut h = b"\x93NUMPY\x01\x00".to_vec();
        h.extend((dict.len() as u16).to_le_bytes());
        h.extend(dict.as_bytes());
        h.extend(data);
        h
    }

    #[test]
    fn reads_int64_ids_and_rejects_bad_ones() {
        let p = Path::new("ids.npy");
        let data: Vec<u8> = [1i64, 2, 3, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let m = TokenIdMatrix::from_npy_bytes(p, &npy("<i8", "(2, 2)", &data)).unwrap();
        assert_eq!(m.ids, vec![1, 2, 3, 0]);
        let seqs = m.clone().into_sequences(p, None).unwrap();
        assert_eq!(seqs.vocab().token(seqs.ids(2..3).unwrap()[0]), "[3]");
        let small = Vocab::from_strings(vec!["a".into(), "b".into()]);
        let e = m.into_sequences(p, Some(small)).unwrap_err().to_string();
        assert!(e.contains("token id 2") && e.contains("ids.npy"), "{e}");
        let neg: Vec<u8> = [-1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert!(TokenIdMatrix::from_npy_bytes(p, &npy("<i4", "(1, 2)", &neg)).is_err());
        assert!(TokenIdMatrix::from_npy_bytes(p, &npy("<f4", "(1, 2)", &neg)).is_err());
        assert!(TokenIdMatrix::from_npy_bytes(p, &npy("<i4", "(2, 2)", &neg)).is_err());
        assert!(TokenIdMatrix::from_npy_bytes(p, &npy("<i4", "(2,)", &neg)).is_err());
    }

    #[test]
    fn id_errors_say_what_was_expected() {
        let p = Path::new("ids.npy");
        let neg: Vec<u8> = [3i32, -2].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = TokenIdMatrix::from_npy_bytes(p, &npy("<i4", "(1, 2)", &neg))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ids.npy")
                && e.contains("token id -2 at sequence 0, position 1")
                && e.contains("expected ids from 0 to 4294967295"),
            "{e}"
        );
        // The dtype message lists every dtype that is read (uint16/uint32/uint64 too).
        let e = TokenIdMatrix::from_npy_bytes(p, &npy("<i2", "(1, 2)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("<i2"), "{e}");
        for (descr, size) in [("<u2", 2), ("<u4", 4), ("<u8", 8), ("<i4", 4), ("<i8", 8)] {
            assert!(e.contains(descr), "{descr} missing from: {e}");
            let m = TokenIdMatrix::from_npy_bytes(p, &npy(descr, "(1, 2)", &vec![0; 2 * size]));
            assert_eq!(m.unwrap().ids, vec![0, 0], "{descr}");
        }
    }

    #[test]
    fn a_huge_uint64_id_is_reported_as_itself() {
        let p = Path::new("ids.npy");
        let big = (1u64 << 63) + 5;
        let data: Vec<u8> = [1u64, 2, 3, big]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let e = TokenIdMatrix::from_npy_bytes(p, &npy("<u8", "(2, 2)", &data))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("token id {big} at sequence 1, position 1")),
            "{e}"
        );
    }

    /// `npy(...)` with `'fortran_order': True` (same header length).
    fn fortran(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut b = npy(descr, shape, data);
        let at = b.windows(5).position(|w| w == b"False").unwrap();
        b[at..at + 5].copy_from_slice(b"True ");
        b
    }

    #[test]
    fn fortran_order_ids_read_as_c_order() {
        let p = Path::new("ids.npy");
        // ids[s][l] = 10·s + l for 3 sequences of 4 tokens.
        let c: Vec<i64> = (0..3)
            .flat_map(|s| (0..4).map(move |l| 10 * s + l))
            .collect();
        let f: Vec<i64> = (0..4)
            .flat_map(|l| (0..3).map(move |s| 10 * s + l))
            .collect();
        for (descr, size) in [("<i4", 4), ("<i8", 8), ("<u2", 2), ("<u4", 4), ("<u8", 8)] {
            let bytes = |v: &[i64]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| x.to_le_bytes()[..size].to_vec())
                    .collect()
            };
            let from_c = TokenIdMatrix::from_npy_bytes(p, &npy(descr, "(3, 4)", &bytes(&c)));
            let from_f = TokenIdMatrix::from_npy_bytes(p, &fortran(descr, "(3, 4)", &bytes(&f)));
            let (from_c, from_f) = (from_c.unwrap(), from_f.unwrap());
            assert_eq!(from_f, from_c, "{descr}");
            assert_eq!(from_f.ids[4 + 2], 12, "{descr}");
            assert_eq!((from_f.n_sequences, from_f.seq_len), (3, 4));
        }
        // 1-D and single-row/column arrays are the same in both orders.
        let one: Vec<u8> = [5i32, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            TokenIdMatrix::from_npy_bytes(p, &fortran("<i4", "(1, 2)", &one)).unwrap(),
            TokenIdMatrix::from_npy_bytes(p, &npy("<i4", "(1, 2)", &one)).unwrap()
        );
        assert!(TokenIdMatrix::from_npy_bytes(p, &fortran("<i4", "(2,)", &one)).is_err());
        // A bad id is reported where it is in the array, not where it is in the file.
        let mut bad = f.clone();
        bad[3 + 2] = -7; // sequence 2, position 1
        let e = TokenIdMatrix::from_npy_bytes(p, &fortran("<i8", "(3, 4)", &bytes8(&bad)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("token id -7 at sequence 2, position 1"), "{e}");
        let mut big: Vec<u64> = f.iter().map(|&v| v as u64).collect();
        big[3 * 3 + 1] = 1 << 40; // sequence 1, position 3
        let big: Vec<u8> = big.iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = TokenIdMatrix::from_npy_bytes(p, &fortran("<u8", "(3, 4)", &big))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!(
                "token id {} at sequence 1, position 3",
                1u64 << 40
            )),
            "{e}"
        );
        // Nothing to reorder in a shape with no elements, however many sequences it claims.
        let e = TokenIdMatrix::from_npy_bytes(p, &fortran("<i4", "(1152921504606846976, 0)", &[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sequences of length 0"), "{e}");
    }

    fn bytes8(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// The strings of rows `a..b` of `t`.
    fn strings(t: &TokenSequences, a: u64, b: u64) -> Vec<String> {
        t.ids(a..b)
            .unwrap()
            .into_iter()
            .map(|id| t.vocab().token(id).into_owned())
            .collect()
    }

    /// `open_npy` reads ids from the file as rows are asked for; every row range must hold
    /// the tokens of the array read whole, for every dtype, with a tokenizer vocabulary
    /// (strings shared by several ids included), without one, and in Fortran order.
    #[test]
    fn ids_read_from_the_file_equal_the_array_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        // 3 sequences of 4; ids 0..6 of a vocabulary where 1, 3 and 5 share a string.
        let c: Vec<i64> = vec![0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0];
        let vocab = || {
            Vocab::from_strings(
                ["a", "\u{FFFD}", " b", "\u{FFFD}", "c", "\u{FFFD}"]
                    .map(String::from)
                    .to_vec(),
            )
        };
        for (descr, size) in [("<i4", 4), ("<i8", 8), ("<u2", 2), ("<u4", 4), ("<u8", 8)] {
            let bytes = |v: &[i64]| -> Vec<u8> {
                v.iter()
                    .flat_map(|&x| x.to_le_bytes()[..size].to_vec())
                    .collect()
            };
            let file = npy(descr, "(3, 4)", &bytes(&c));
            let p = dir
                .path()
                .join(format!("ids{size}{descr}.npy").replace('<', ""));
            std::fs::write(&p, &file).unwrap();
            for with_vocab in [true, false] {
                let v = with_vocab.then(vocab);
                let lazy = open_npy(&p, v.clone()).unwrap();
                assert!(matches!(
                    lazy.ids,
                    super::super::tokens_json::IdStore::Array(_)
                ));
                let whole = TokenIdMatrix::from_npy_bytes(&p, &file)
                    .unwrap()
                    .into_sequences(&p, v)
                    .unwrap();
                assert_eq!(lazy.offsets(), whole.offsets());
                for a in 0..=12 {
                    for b in a..=12 {
                        assert_eq!(
                            strings(&lazy, a, b),
                            strings(&whole, a, b),
                            "{descr} {a}..{b}"
                        );
                    }
                }
                // One id per string: the three ids of U+FFFD read as one.
                if with_vocab {
                    let ids = lazy.ids(0..12).unwrap();
                    assert_eq!((ids[1], ids[3], ids[5]), (1, 1, 1), "{descr}");
                }
            }
        }
        // Fortran order is read whole, with the same tokens.
        let f: Vec<i64> = (0..4)
            .flat_map(|l| (0..3).map(move |s| (l, s)))
            .map(|(l, s)| c[s * 4 + l])
            .collect();
        let p = dir.path().join("fortran.npy");
        std::fs::write(&p, fortran("<i8", "(3, 4)", &bytes8(&f))).unwrap();
        let from_f = open_npy(&p, Some(vocab())).unwrap();
        let p = dir.path().join("ids8i8.npy");
        let from_c = open_npy(&p, Some(vocab())).unwrap();
        assert_eq!(strings(&from_f, 0, 12), strings(&from_c, 0, 12));
    }

    #[test]
    fn open_npy_refuses_bad_ids_where_they_are_and_notices_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        let small = || Some(Vocab::from_strings(vec!["a".into(), "b".into()]));
        std::fs::write(&p, npy("<i8", "(2, 3)", &bytes8(&[0, 1, 0, 1, -4, 0]))).unwrap();
        let e = open_npy(&p, small()).unwrap_err().to_string();
        assert!(
            e.contains("ids.npy") && e.contains("token id -4 at sequence 1, position 1"),
            "{e}"
        );
        std::fs::write(&p, npy("<i8", "(2, 3)", &bytes8(&[0, 1, 0, 1, 0, 2]))).unwrap();
        let e = open_npy(&p, small()).unwrap_err().to_string();
        assert!(
            e.contains("token id 2 at sequence 1, position 2 is outside the tokenizer's vocabulary of 2 ids"),
            "{e}"
        );
        let big: Vec<u8> = [0u64, 1 << 33]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        std::fs::write(&p, npy("<u8", "(1, 2)", &big)).unwrap();
        let e = open_npy(&p, None).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "token id {} at sequence 0, position 1",
                1u64 << 33
            )),
            "{e}"
        );
        std::fs::write(&p, npy("<i4", "(3,)", &[0; 12])).unwrap();
        assert!(open_npy(&p, None)
            .unwrap_err()
            .to_string()
            .contains("expected [sequences, seq_len]"));

        std::fs::write(&p, npy("<i8", "(2, 3)", &bytes8(&[0, 1, 0, 1, 1, 0]))).unwrap();
        let t = open_npy(&p, small()).unwrap();
        std::fs::write(&p, npy("<i8", "(2, 3)", &bytes8(&[0, 1, 0, 1, 7, 0]))).unwrap();
        assert_eq!(t.ids(0..3).unwrap().len(), 3);
        let e = t.ids(2..6).unwrap_err().to_string();
        assert!(e.contains("row 4") && e.contains("changed"), "{e}");
    }
}
