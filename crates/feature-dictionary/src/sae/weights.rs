//! SAE weight files: SAELens `sae_weights.safetensors` or Gemma Scope `params.npz` (a zip of
//! `.npy` arrays, stored or deflated). Every tensor is converted to f32 once at load, and
//! every tensor an SAE reads is checked to be finite when it is taken.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ingest::safetensors::{decode_floats, float_dtype, SafeTensors};

/// Why a non-finite weight is refused at load rather than met later: encoding would turn it
/// into NaN latents, reported against the residuals, and decoder analyses into empty answers.
const NONFINITE_WHY: &str =
    "every weight of an SAE must be finite (the file is damaged or its training diverged)";

/// A tensor's values: decoded, or (from an `.npz`) still the array's bytes, decoded only when
/// taken — a `params.npz` may hold arrays nobody reads, in dtypes or layouts that would
/// otherwise have to be converted for nothing.
#[derive(Debug)]
enum Values {
    Decoded(Vec<f32>),
    Npy {
        dtype: crate::ingest::DenseDtype,
        fortran_order: bool,
        bytes: Vec<u8>,
        data_offset: usize,
    },
}

impl Values {
    fn decode(self, shape: &[u64]) -> Vec<f32> {
        match self {
            Values::Decoded(v) => v,
            npy => npy.decoded(shape).into_owned(),
        }
    }

    fn decoded(&self, shape: &[u64]) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Values::Decoded(v) => std::borrow::Cow::Borrowed(v),
            Values::Npy {
                dtype,
                fortran_order,
                bytes,
                data_offset,
            } => {
                let v = decode_floats(&bytes[*data_offset..], *dtype);
                std::borrow::Cow::Owned(if *fortran_order {
                    c_order_of_fortran(&v, shape)
                } else {
                    v
                })
            }
        }
    }
}

/// The values of a column-major array of `shape`, reordered row-major (what `np.savez` of a
/// transposed array, e.g. `W_dec = W_enc.T`, stores).
fn c_order_of_fortran(values: &[f32], shape: &[u64]) -> Vec<f32> {
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if dims.len() < 2 {
        return values.to_vec();
    }
    let mut c_strides = vec![1usize; dims.len()];
    for axis in (0..dims.len() - 1).rev() {
        c_strides[axis] = c_strides[axis + 1] * dims[axis + 1];
    }
    let mut out = vec![0f32; values.len()];
    // Walk the values in their stored order (first axis fastest), carrying the index.
    let mut index = vec![0usize; dims.len()];
    let mut at = 0usize;
    for &v in values {
        out[at] = v;
        for axis in 0..dims.len() {
            index[axis] += 1;
            at += c_strides[axis];
            if index[axis] < dims[axis] {
                break;
            }
            at -= c_strides[axis] * dims[axis];
            index[axis] = 0;
        }
    }
    out
}

/// Named float tensors read from one weight file.
#[derive(Debug)]
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, (Vec<u64>, Values)>,
    /// Names and shapes of the tensors already taken, so "the file has" lists stay whole.
    taken: Vec<(String, Vec<u64>)>,
    /// Tensors left out for not being floats, with their dtypes: a weight stored so is
    /// named as such rather than called missing.
    not_floats: Vec<(String, String)>,
}

impl Weights {
    /// Reads every float tensor of a `.safetensors` file.
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let st = SafeTensors::open(path)?;
        Self::from_st(&st)
    }

    /// Reads every float tensor of parsed safetensors (non-float tensors are skipped).
    pub fn from_st(st: &SafeTensors) -> Result<Self> {
        let mut tensors = HashMap::new();
        let mut not_floats = Vec::new();
        for t in st.tensors() {
            if float_dtype(&t.dtype).is_some() {
                tensors.insert(
                    t.name.clone(),
                    (t.shape.clone(), Values::Decoded(st.to_f32(t)?)),
                );
            } else {
                not_floats.push((t.name.clone(), t.dtype.clone()));
            }
        }
        Ok(Self {
            path: st.path().to_path_buf(),
            tensors,
            taken: Vec::new(),
            not_floats,
        })
    }

    /// Reads the arrays of an `.npz` file (each decoded when taken; arrays that are not
    /// floats are listed as such, not refused, since the SAE may not need them).
    pub fn from_npz(path: &Path) -> Result<Self> {
        let map = crate::ingest::map_file(path)?;
        Self::from_npz_bytes(path, &map)
    }

    /// Parses `.npz` bytes in memory (`path` is used in messages).
    pub fn from_npz_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| Error::format(path, format!("not a valid .npz (zip) file: {e}")))?;
        let mut tensors = HashMap::new();
        let mut not_floats = Vec::new();
        for i in 0..zip.len() {
            let mut entry = zip
                .by_index(i)
                .map_err(|e| Error::format(path, format!("unreadable .npz entry {i}: {e}")))?;
            let name = entry.name().to_string();
            let Some(key) = name.strip_suffix(".npy") else {
                continue;
            };
            let declared = entry.size();
            // Read at most the declared size (+1 to notice a lie); the buffer grows only as
            // real bytes arrive, so a forged size never becomes an allocation.
            let mut buf = Vec::new();
            (&mut entry)
                .take(declared.saturating_add(1))
                .read_to_end(&mut buf)
                .map_err(|e| Error::format(path, format!(".npz entry {name}: {e}")))?;
            if buf.len() as u64 != declared {
                return Err(Error::format(
                    path,
                    format!(
                        ".npz entry {name} declares {declared} bytes but holds {}",
                        buf.len()
                    ),
                ));
            }
            let entry_path = path.join(&name);
            let h = crate::ingest::npy::parse_header(&entry_path, &buf)?;
            let Ok(dtype) = crate::ingest::npy::dense_dtype(&entry_path, &h.descr) else {
                not_floats.push((key.to_string(), h.descr.clone()));
                continue;
            };
            let needed = h
                .shape
                .iter()
                .try_fold(dtype.size() as u64, |a, &d| a.checked_mul(d));
            let data = &buf[h.data_offset..];
            if needed != Some(data.len() as u64) {
                return Err(Error::format(
                    &entry_path,
                    format!(
                        "array of shape {:?} and dtype {} does not match its {} data bytes",
                        h.shape,
                        h.descr,
                        data.len()
                    ),
                ));
            }
            let values = Values::Npy {
                dtype,
                fortran_order: h.fortran_order,
                data_offset: h.data_offset,
                bytes: buf,
            };
            tensors.insert(key.to_string(), (h.shape, values));
        }
        Ok(Self {
            path: path.to_path_buf(),
            tensors,
            taken: Vec::new(),
            not_floats,
        })
    }

    /// The weight file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Shape of a tensor found under any of `names`.
    pub fn shape(&self, names: &[&str]) -> Option<&[u64]> {
        names
            .iter()
            .find_map(|n| self.tensors.get(*n))
            .map(|t| t.0.as_slice())
    }

    /// The tensors of the file with their shapes, sorted, as error messages list them.
    pub fn list(&self) -> String {
        let mut v: Vec<String> = self
            .tensors
            .iter()
            .map(|(n, (s, _))| (n, s))
            .chain(self.taken.iter().map(|(n, s)| (n, s)))
            .map(|(n, s)| format!("{n} {s:?}"))
            .chain(self.not_floats.iter().map(|(n, d)| format!("{n} ({d})")))
            .collect();
        v.sort();
        v.join(", ")
    }

    /// The error for a tensor under any of `names` that is held but not of floats (an
    /// object array pickled into an `.npz`, integers), which no weight can be.
    pub fn not_float_error(&self, names: &[&str]) -> Option<Error> {
        let (name, dtype) = self
            .not_floats
            .iter()
            .find(|(n, _)| names.contains(&n.as_str()))?;
        Some(Error::format(
            &self.path,
            format!("tensor {name} has dtype {dtype}; SAE weights must be little-endian floats (F32, F16, BF16 or F64; <f4, <f2 or <f8 in an .npz)"),
        ))
    }

    /// Removes and returns the tensor found under any of `names`, checking its shape and
    /// that every value is finite.
    pub fn take(&mut self, names: &[&str], shape: &[usize]) -> Result<Vec<f32>> {
        match self.take_opt(names, shape)? {
            Some(t) => Ok(t),
            None => {
                if let Some(e) = self.not_float_error(names) {
                    return Err(e);
                }
                Err(Error::format(
                    &self.path,
                    format!(
                        "missing tensor {} (shape {shape:?}); the file has {}",
                        names[0],
                        self.list()
                    ),
                ))
            }
        }
    }

    /// Like [`Weights::take`] for an optional tensor.
    pub fn take_opt(&mut self, names: &[&str], shape: &[usize]) -> Result<Option<Vec<f32>>> {
        let Some(name) = names.iter().find(|n| self.tensors.contains_key(**n)) else {
            return Ok(None);
        };
        let (s, values) = self.tensors.remove(*name).expect("present");
        self.taken.push((name.to_string(), s.clone()));
        let want: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if s != want {
            return Err(Error::format(
                &self.path,
                format!(
                    "tensor {name} has shape {s:?}; expected {want:?} from d_in/d_sae in the config"
                ),
            ));
        }
        let data = values.decode(&s);
        crate::finite::check(&self.path, name, &s, &data, NONFINITE_WHY)?;
        Ok(Some(data))
    }

    /// Fails when the tensor found under any of `names` (one not taken, e.g. a decoder that
    /// encoding does not read) holds a NaN or ±Inf; an absent tensor passes.
    pub fn check_finite(&self, names: &[&str]) -> Result<()> {
        match names.iter().find_map(|n| self.tensors.get_key_value(*n)) {
            Some((name, (shape, values))) => crate::finite::check(
                &self.path,
                name,
                shape,
                &values.decoded(shape),
                NONFINITE_WHY,
            ),
            None => Ok(()),
        }
    }
}
