//! `.safetensors` files: an 8-byte little-endian header length, a JSON header naming each
//! tensor's dtype, shape and byte range, then the raw little-endian data.
//!
//! The header is validated against the file length before any data is touched: a header
//! length beyond the file, a byte range outside the data section, or a shape × dtype that
//! disagrees with its byte range is an error naming the file — never an allocation sized by
//! the header or an out-of-bounds read. The same parser serves dense activations, delphi
//! latent caches and SAE weights.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::dense::{DenseDtype, DenseMatrix};
use crate::error::{Error, Result};

/// One tensor's entry in the header; `start..end` are absolute byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Dtype as written (`F32`, `F16`, `BF16`, `I32`, `U16`, …).
    pub dtype: String,
    /// Shape.
    pub shape: Vec<u64>,
    /// First byte in the file.
    pub start: usize,
    /// One past the last byte in the file.
    pub end: usize,
}

impl TensorInfo {
    /// `name [d0, d1] DTYPE`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {:?} {}", self.name, self.shape, self.dtype)
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// Bytes per element of a safetensors dtype, `None` when unknown.
pub fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

/// Where the file's bytes live: a read-only map, or memory (tests, fuzzing).
#[derive(Debug)]
enum Backing {
    Map(Mmap),
    Owned(Vec<u8>),
}

impl Deref for Backing {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// A parsed `.safetensors` file.
#[derive(Debug)]
pub struct SafeTensors {
    path: PathBuf,
    data: Backing,
    tensors: Vec<TensorInfo>,
    metadata: Metadata,
}

/// Largest header accepted (the reference implementation's limit), so a corrupt length
/// never makes us parse hundreds of megabytes of garbage.
const MAX_HEADER: u64 = 100_000_000;

/// Parses the header of a safetensors file held in `bytes`, validating every tensor's byte
/// range against `bytes.len()`.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Vec<TensorInfo>> {
    parse(path, bytes).map(|(tensors, _)| tensors)
}

/// String entries of a header's `__metadata__`.
type Metadata = Vec<(String, String)>;

/// The tensors and the string entries of `__metadata__`.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<TensorInfo>, Metadata)> {
    if bytes.len() < 8 {
        return Err(Error::format(
            path,
            format!(
                "truncated .safetensors file: {} bytes, expected at least the 8-byte header length",
                bytes.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let available = (bytes.len() - 8) as u64;
    if n > available || n > MAX_HEADER {
        return Err(Error::format(
            path,
            format!(
                "not a valid .safetensors file: the header declares {n} header bytes but the file has only {available} bytes after the length field"
            ),
        ));
    }
    let data_start = 8 + n as usize;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..data_start]).map_err(|e| {
            Error::format(
                path,
                format!("not a valid .safetensors file: header is not a JSON object ({e})"),
            )
        })?;
    let data_len = bytes.len() - data_start;
    let mut tensors = Vec::with_capacity(header.len());
    let mut metadata = Vec::new();
    for (name, entry) in &header {
        if name == "__metadata__" {
            if let Some(m) = entry.as_object() {
                for (k, v) in m {
                    if let Some(v) = v.as_str() {
                        metadata.push((k.clone(), v.to_string()));
                    }
                }
            }
            continue;
        }
        let bad = |what: &str| {
            Error::format(
                path,
                format!("malformed .safetensors header entry for tensor {name:?}: {what}"),
            )
        };
        let dtype = entry
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no string \"dtype\""))?
            .to_string();
        let shape = entry
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no \"shape\" list"))?
            .iter()
            .map(|d| {
                d.as_u64()
                    .ok_or_else(|| bad("shape entry is not an unsigned integer"))
            })
            .collect::<Result<Vec<u64>>>()?;
        let offsets = entry
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no \"data_offsets\" pair"))?;
        let (begin, end) = match offsets.as_slice() {
            [a, b] => (
                a.as_u64()
                    .ok_or_else(|| bad("data_offsets are not integers"))?,
                b.as_u64()
                    .ok_or_else(|| bad("data_offsets are not integers"))?,
            ),
            _ => return Err(bad("data_offsets is not a [begin, end] pair")),
        };
        if begin > end || end > data_len as u64 {
            return Err(Error::format(
                path,
                format!(
                    "truncated or corrupt .safetensors file: tensor {name:?} occupies data bytes {begin}..{end} but the data section has {data_len} bytes"
                ),
            ));
        }
        if let Some(size) = dtype_size(&dtype) {
            let needed = shape
                .iter()
                .try_fold(size as u64, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(&format!("absurd shape {shape:?}: byte size overflows")))?;
            if needed != end - begin {
                return Err(Error::format(
                    path,
                    format!(
                        "corrupt .safetensors header: tensor {name:?} of shape {shape:?} and dtype {dtype} needs {needed} bytes but its data_offsets span {} bytes",
                        end - begin
                    ),
                ));
            }
        }
        tensors.push(TensorInfo {
            name: name.clone(),
            dtype,
            shape,
            start: data_start + begin as usize,
            end: data_start + end as usize,
        });
    }
    check_layout(path, &tensors, data_start, bytes.len())?;
    Ok((tensors, metadata))
}

/// The data section must be exactly the tensors laid end to end, as the format requires
/// (the reference implementation refuses anything else): two tensors sharing bytes would
/// alias each other, and bytes no tensor claims mean a damaged or spliced file.
fn check_layout(
    path: &Path,
    tensors: &[TensorInfo],
    data_start: usize,
    file_len: usize,
) -> Result<()> {
    let mut by_start: Vec<&TensorInfo> = tensors.iter().collect();
    by_start.sort_by_key(|t| (t.start, t.end));
    let mut covered = data_start;
    let mut previous: Option<&TensorInfo> = None;
    for t in by_start {
        if t.start < covered {
            let p = previous.expect("only a previous tensor can cover data bytes");
            return Err(Error::format(
                path,
                format!(
                    "corrupt .safetensors header: tensors {:?} (data bytes {}..{}) and {:?} (data bytes {}..{}) overlap",
                    p.name,
                    p.start - data_start,
                    p.end - data_start,
                    t.name,
                    t.start - data_start,
                    t.end - data_start
                ),
            ));
        }
        if t.start > covered {
            return Err(Error::format(
                path,
                format!(
                    "corrupt .safetensors file: data bytes {}..{} belong to no tensor (tensor {:?} starts at {}); the format lays tensors end to end",
                    covered - data_start,
                    t.start - data_start,
                    t.name,
                    t.start - data_start
                ),
            ));
        }
        covered = t.end;
        previous = Some(t);
    }
    if covered != file_len {
        return Err(Error::format(
            path,
            format!(
                "corrupt .safetensors file: {} bytes after the last tensor's data (the data section has {} bytes, its tensors use {})",
                file_len - covered,
                file_len - data_start,
                covered - data_start
            ),
        ));
    }
    Ok(())
}

impl SafeTensors {
    /// Maps and parses `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let map = super::dense::map_file_expecting(path, "a .safetensors file")?;
        let (tensors, metadata) = parse(path, &map)?;
        Ok(Self {
            path: path.to_path_buf(),
            data: Backing::Map(map),
            tensors,
            metadata,
        })
    }

    /// Parses bytes already in memory (`path` is only used in messages).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let (tensors, metadata) = parse(path, &bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            data: Backing::Owned(bytes),
            tensors,
            metadata,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tensor, in header order (sorted by name).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A string entry of the header's `__metadata__`, if present.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A tensor by name, if present.
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Names and shapes of all tensors, for messages.
    pub fn list(&self) -> String {
        let v: Vec<String> = self.tensors.iter().map(|t| t.describe()).collect();
        if v.is_empty() {
            "no tensors".into()
        } else {
            v.join(", ")
        }
    }

    /// A tensor by name, or an error listing the tensors the file has.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.get(name).ok_or_else(|| {
            Error::format(
                &self.path,
                format!("missing tensor {name:?}; the file has {}", self.list()),
            )
        })
    }

    /// Raw bytes of a tensor.
    pub fn bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.data[t.start..t.end]
    }

    /// Checks that `t` has `shape`.
    pub fn expect_shape(&self, t: &TensorInfo, shape: &[u64]) -> Result<()> {
        if t.shape != shape {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {:?} has shape {:?}; expected {shape:?}",
                    t.name, t.shape
                ),
            ));
        }
        Ok(())
    }

    /// A float tensor (F64, F32, F16 or BF16) converted to f32.
    pub fn to_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        let dtype = float_dtype(&t.dtype).ok_or_else(|| {
            Error::format(
                &self.path,
                format!(
                    "tensor {:?} has dtype {}; expected a float tensor (F32, F16, BF16 or F64)",
                    t.name, t.dtype
                ),
            )
        })?;
        Ok(decode_floats(self.bytes(t), dtype))
    }

    /// An integer tensor (U8/U16/U32/U64/I8/I16/I32/I64) as i64; u64 values above
    /// `i64::MAX` are an error.
    pub fn to_i64(&self, t: &TensorInfo) -> Result<Vec<i64>> {
        let reader = IntReader::new(&self.path, t, self.bytes(t))?;
        (0..reader.len()).map(|i| reader.get(i)).collect()
    }

    /// Opens a float tensor shaped `[tokens, features]` or `[sequences, seq_len, features]`
    /// as a [`DenseMatrix`] (memory-mapped files only).
    pub fn into_dense(self, name: Option<&str>) -> Result<DenseMatrix> {
        let candidates: Vec<&TensorInfo> = self
            .tensors
            .iter()
            .filter(|t| matches!(t.shape.len(), 2 | 3))
            .collect();
        let t = match name {
            Some(n) => self.tensor(n)?.clone(),
            None => match candidates.as_slice() {
                [one] => (*one).clone(),
                [] => {
                    return Err(Error::format(
                        &self.path,
                        format!(
                            "no 2-D or 3-D tensor to read activations from; the file has {}",
                            self.list()
                        ),
                    ))
                }
                many => {
                    let names: Vec<String> = many.iter().map(|t| t.describe()).collect();
                    return Err(Error::format(
                        &self.path,
                        format!(
                            "several 2-D/3-D tensors: {}; pick one with --tensor NAME",
                            names.join(", ")
                        ),
                    ));
                }
            },
        };
        let dtype = float_dtype(&t.dtype).ok_or_else(|| {
            Error::format(
                &self.path,
                format!(
                    "tensor {:?} has dtype {}; expected float activations (F32, F16 or BF16)",
                    t.name, t.dtype
                ),
            )
        })?;
        let map = match self.data {
            Backing::Map(m) => m,
            Backing::Owned(_) => {
                return Err(Error::Invalid(
                    "dense matrices need a memory-mapped file".into(),
                ))
            }
        };
        DenseMatrix::with_extent(&self.path, map, t.start, t.end - t.start, dtype, &t.shape)
            .map_err(|e| match e {
                Error::Format { path, message } => Error::Format {
                    path,
                    message: format!("tensor {:?}: {message}", t.name),
                },
                other => other,
            })
    }
}

/// Opens a dense activation tensor in a `.safetensors` file; `tensor` picks one by name
/// (default: the only 2-D or 3-D tensor).
pub fn open_dense(path: &Path, tensor: Option<&str>) -> Result<DenseMatrix> {
    SafeTensors::open(path)?.into_dense(tensor)
}

/// The dense dtype of a safetensors float dtype.
pub fn float_dtype(dtype: &str) -> Option<DenseDtype> {
    match dtype {
        "F32" => Some(DenseDtype::F32),
        "F16" => Some(DenseDtype::F16),
        "BF16" => Some(DenseDtype::BF16),
        "F64" => Some(DenseDtype::F64),
        _ => None,
    }
}

/// Decodes little-endian floats of `dtype` (no alignment required).
pub fn decode_floats(bytes: &[u8], dtype: DenseDtype) -> Vec<f32> {
    match dtype {
        DenseDtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        DenseDtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DenseDtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        DenseDtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
    }
}

/// Decodes one little-endian float of `dtype` from the start of `b`.
#[inline]
pub fn decode_float(b: &[u8], dtype: DenseDtype) -> f32 {
    match dtype {
        DenseDtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        DenseDtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
        DenseDtype::BF16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        DenseDtype::F64 => f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32,
    }
}

/// Random access to the elements of an integer tensor of any width and signedness.
#[derive(Debug, Clone, Copy)]
pub struct IntReader<'a> {
    bytes: &'a [u8],
    size: usize,
    signed: bool,
    path: &'a Path,
    name: &'a str,
}

impl<'a> IntReader<'a> {
    /// Wraps the bytes of integer tensor `t`, or explains why it is not one.
    pub fn new(path: &'a Path, t: &'a TensorInfo, bytes: &'a [u8]) -> Result<Self> {
        let (size, signed) = match t.dtype.as_str() {
            "U8" => (1, false),
            "U16" => (2, false),
            "U32" => (4, false),
            "U64" => (8, false),
            "I8" => (1, true),
            "I16" => (2, true),
            "I32" => (4, true),
            "I64" => (8, true),
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "tensor {:?} has dtype {other}; expected an integer tensor (U16, U32, I32, I64, …)",
                        t.name
                    ),
                ))
            }
        };
        Ok(Self {
            bytes,
            size,
            signed,
            path,
            name: &t.name,
        })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.bytes.len() / self.size
    }

    /// Bytes per element.
    pub fn element_size(&self) -> usize {
        self.size
    }

    /// Whether elements are signed.
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// The little-endian bytes of element `i` (must be `< len()`).
    #[inline]
    pub fn element_bytes(&self, i: usize) -> &[u8] {
        &self.bytes[i * self.size..(i + 1) * self.size]
    }

    /// Whether the tensor is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Element `i` (must be `< len()`).
    #[inline]
    pub fn get(&self, i: usize) -> Result<i64> {
        let v = le_int(self.element_bytes(i), self.signed);
        i64::try_from(v).map_err(|_| {
            Error::format(
                self.path,
                format!("tensor {:?} holds the absurd value {v}", self.name),
            )
        })
    }
}

/// The little-endian integer in `bytes` (1, 2, 4 or 8 of them), signed or not, whatever its
/// value.
#[inline]
pub(crate) fn le_int(bytes: &[u8], signed: bool) -> i128 {
    match (bytes.len(), signed) {
        (1, false) => bytes[0] as i128,
        (1, true) => bytes[0] as i8 as i128,
        (2, false) => u16::from_le_bytes([bytes[0], bytes[1]]) as i128,
        (2, true) => i16::from_le_bytes([bytes[0], bytes[1]]) as i128,
        (4, false) => u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i128,
        (4, true) => i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as i128,
        (_, true) => i64::from_le_bytes(bytes.try_into().expect("8 bytes")) as i128,
        (_, false) => u64::from_le_bytes(bytes.try_into().expect("8 bytes")) as i128,
    }
}

/// Serializes tensors into the bytes of a `.safetensors` file (header padded to 8 bytes).
/// Each entry is `(name, dtype, shape, little-endian data)`.
pub fn serialize(tensors: &[(&str, &str, Vec<u64>, &[u8])]) -> Vec<u8> {
    let entries: Vec<(&str, &str, Vec<u64>, u64)> = tensors
        .iter()
        .map(|(n, d, s, data)| (*n, *d, s.clone(), data.len() as u64))
        .collect();
    let mut out = header_bytes(&entries);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    out
}

/// The length field and JSON header of a `.safetensors` file whose tensors
/// `(name, dtype, shape, byte length)` follow in this order; lets writers stream the data.
pub fn header_bytes(tensors: &[(&str, &str, Vec<u64>, u64)]) -> Vec<u8> {
    header_bytes_with_metadata(tensors, &[])
}

/// Like [`header_bytes`], with string `__metadata__` entries.
pub fn header_bytes_with_metadata(
    tensors: &[(&str, &str, Vec<u64>, u64)],
    metadata: &[(&str, &str)],
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| ((*k).to_string(), serde_json::Value::from(*v)))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(m));
    }
    let mut offset = 0u64;
    for (name, dtype, shape, len) in tensors {
        header.insert(
            (*name).to_string(),
            serde_json::json!({
                "dtype": dtype,
                "shape": shape,
                "data_offsets": [offset, offset + len],
            }),
        );
        offset += len;
    }
    let mut text = serde_json::to_vec(&header).expect("header serializes");
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len());
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn roundtrip_and_typed_reads() {
        let a = f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b: Vec<u8> = [7u16, 65535].iter().flat_map(|x| x.to_le_bytes()).collect();
        let bytes = serialize(&[("a", "F32", vec![2, 3], &a), ("b", "U16", vec![2], &b)]);
        let st = SafeTensors::from_bytes(Path::new("t.safetensors"), bytes).unwrap();
        let ta = st.tensor("a").unwrap();
        assert_eq!(ta.shape, vec![2, 3]);
        assert_eq!(st.to_f32(ta).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(st.to_i64(st.tensor("b").unwrap()).unwrap(), vec![7, 65535]);
        let e = st.tensor("zz").unwrap_err().to_string();
        assert!(
            e.contains("missing tensor \"zz\"") && e.contains("a [2, 3] F32"),
            "{e}"
        );
        let e = st.to_f32(st.tensor("b").unwrap()).unwrap_err().to_string();
        assert!(e.contains("U16") && e.contains("float"), "{e}");
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let p = Path::new("bad.safetensors");
        let a = f32_bytes(&[1.0, 2.0]);
        let good = serialize(&[("a", "F32", vec![2], &a)]);
        // Truncated anywhere.
        for cut in 0..good.len() {
            assert!(parse_header(p, &good[..cut]).is_err(), "cut at {cut}");
        }
        // Absurd header length.
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        let e = parse_header(p, &huge).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors") && e.contains("header"), "{e}");
        // Shape × dtype disagrees with the byte range.
        let wrong = serialize(&[("a", "F32", vec![3], &a)]);
        let e = parse_header(p, &wrong).unwrap_err().to_string();
        assert!(e.contains("needs 12 bytes"), "{e}");
        // Absurd shape.
        let absurd = serialize(&[("a", "F32", vec![1 << 62, 1 << 62], &a)]);
        assert!(parse_header(p, &absurd)
            .unwrap_err()
            .to_string()
            .contains("absurd"));
    }

    /// A file from a hand-written header (padded to 8 bytes) and data section.
    fn with_header(header: &str, data: &[u8]) -> Vec<u8> {
        let mut text = header.as_bytes().to_vec();
        while !text.len().is_multiple_of(8) {
            text.push(b' ');
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend(data);
        out
    }

    #[test]
    fn the_data_section_must_be_exactly_the_tensors() {
        let p = Path::new("bad.safetensors");
        let data = f32_bytes(&[1.0, 2.0, 3.0]);
        // Laid end to end in either header order, and zero-sized tensors anywhere: fine.
        let good = with_header(
            r#"{"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"e":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#,
            &data,
        );
        assert_eq!(parse_header(p, &good).unwrap().len(), 3);
        let overlap = with_header(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
            &data,
        );
        let e = parse_header(p, &overlap).unwrap_err().to_string();
        assert!(
            e.contains("bad.safetensors")
                && e.contains("\"a\" (data bytes 0..8) and \"b\" (data bytes 4..12) overlap"),
            "{e}"
        );
        let hole = with_header(
            r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
            &data,
        );
        let e = parse_header(p, &hole).unwrap_err().to_string();
        assert!(e.contains("data bytes 4..8 belong to no tensor"), "{e}");
        let trailing = with_header(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &data,
        );
        let e = parse_header(p, &trailing).unwrap_err().to_string();
        assert!(e.contains("4 bytes after the last tensor's data"), "{e}");
    }
}
