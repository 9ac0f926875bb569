//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), memory-mapped.
//!
//! Only the header is parsed eagerly; it is validated against the file length before any
//! data is touched, so a truncated file or an absurd declared shape is an error, never an
//! allocation or an out-of-bounds read.

use std::path::Path;

use super::dense::{DenseDtype, DenseMatrix};
use crate::error::{Error, Result};

/// Parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// Dtype descriptor as written, e.g. `<f4`.
    pub descr: String,
    /// Whether the data is column-major.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<u64>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// Parses the header of an `.npy` file held in `bytes`.
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<NpyHeader> {
    if bytes.is_empty() {
        return Err(Error::format(
            path,
            "file is empty; expected a NumPy .npy array",
        ));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(Error::format(
            path,
            "not a NumPy .npy file: expected the magic bytes \\x93NUMPY at the start",
        ));
    }
    if bytes.len() < 8 {
        return Err(Error::format(
            path,
            format!(
                "truncated .npy header: the file ends after {} bytes, before the format version",
                bytes.len()
            ),
        ));
    }
    let major = bytes[6];
    let (len_bytes, start) = match major {
        1 => (2usize, 8usize),
        2 | 3 => (4, 8),
        v => {
            return Err(Error::format(
                path,
                format!(
                    "unsupported .npy format version {v}.{}; expected 1.0, 2.0 or 3.0",
                    bytes[7]
                ),
            ))
        }
    };
    if bytes.len() < start + len_bytes {
        return Err(Error::format(
            path,
            format!(
                "truncated .npy header: format {major}.{} needs {} bytes before the header text but the file has only {}",
                bytes[7],
                start + len_bytes,
                bytes.len()
            ),
        ));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([bytes[8], bytes[9]]) as usize
    } else {
        u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize
    };
    let data_offset = start + len_bytes + header_len;
    if bytes.len() < data_offset {
        return Err(Error::format(
            path,
            format!(
                "truncated .npy header: it declares {header_len} header bytes but the file has only {} bytes",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(&bytes[start + len_bytes..data_offset])
        .map_err(|_| Error::format(path, ".npy header is not valid text"))?;
    parse_dict(path, text, data_offset)
}

/// The value at the start of `text` when it is a bracketed list (up to its closing bracket),
/// else its first line: what an error quotes of a header value, not the rest of the header.
fn bracketed_prefix(text: &str) -> &str {
    let mut depth = 0i32;
    for (i, c) in text.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => {
                depth -= 1;
                if depth <= 0 {
                    return &text[..i + c.len_utf8()];
                }
            }
            '\n' if depth <= 0 => return text[..i].trim_end(),
            _ => {}
        }
    }
    text.trim_end()
}

fn parse_dict(path: &Path, text: &str, data_offset: usize) -> Result<NpyHeader> {
    let bad = |what: &str| {
        Error::format(
            path,
            format!("malformed .npy header ({what}): {}", text.trim()),
        )
    };
    let value_of = |key: &str| -> Result<&str> {
        let k1 = format!("'{key}'");
        let k2 = format!("\"{key}\"");
        let at = text
            .find(&k1)
            .map(|i| i + k1.len())
            .or_else(|| text.find(&k2).map(|i| i + k2.len()))
            .ok_or_else(|| bad(&format!("no '{key}' key")))?;
        let rest = text[at..].trim_start();
        let rest = rest.strip_prefix(':').ok_or_else(|| bad("expected ':'"))?;
        Ok(rest.trim_start())
    };
    // numpy's literal_eval keeps the last of a repeated key, a first-match reader the
    // first: the same file would be two different arrays. Refuse the ambiguity.
    for key in ["descr", "fortran_order", "shape"] {
        let as_key = |quoted: String| {
            text.match_indices(&quoted)
                .filter(|(i, _)| text[i + quoted.len()..].trim_start().starts_with(':'))
                .count()
        };
        if as_key(format!("'{key}'")) + as_key(format!("\"{key}\"")) > 1 {
            return Err(bad(&format!("the key '{key}' appears more than once")));
        }
    }
    let descr_raw = value_of("descr")?;
    let quote = descr_raw.chars().next().ok_or_else(|| bad("empty descr"))?;
    if quote != '\'' && quote != '"' {
        return Err(Error::format(
            path,
            format!(
                "unsupported dtype: structured arrays are not activations (descr {})",
                bracketed_prefix(descr_raw)
            ),
        ));
    }
    let descr_end = descr_raw[1..]
        .find(quote)
        .ok_or_else(|| bad("unterminated descr"))?;
    let descr = descr_raw[1..1 + descr_end].to_string();
    let fortran = value_of("fortran_order")?;
    // The literal must end where it ends (`Truex` is not `True`, numpy refuses it too).
    let literal = |word: &str| {
        fortran
            .strip_prefix(word)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    };
    let fortran_order = if literal("True") {
        true
    } else if literal("False") {
        false
    } else {
        return Err(bad("fortran_order is neither True nor False"));
    };
    let shape_raw = value_of("shape")?;
    let shape_raw = shape_raw
        .strip_prefix('(')
        .ok_or_else(|| bad("shape is not a tuple"))?;
    let close = shape_raw
        .find(')')
        .ok_or_else(|| bad("unterminated shape"))?;
    let mut shape = Vec::new();
    for part in shape_raw[..close].split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue;
        }
        let p = p.trim_end_matches('L');
        shape.push(
            p.parse::<u64>()
                .map_err(|_| bad("shape entry is not an integer"))?,
        );
    }
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
        data_offset,
    })
}

/// Maps the dtype descriptor to a supported activation dtype.
pub fn dense_dtype(path: &Path, descr: &str) -> Result<DenseDtype> {
    let little = descr.starts_with('<') || descr.starts_with('|') || descr.starts_with('=');
    let kind = descr.trim_start_matches(['<', '>', '|', '=']);
    if descr.starts_with('>') && kind != "f1" {
        return Err(Error::format(
            path,
            format!("unsupported dtype {descr}: big-endian data; expected little-endian float32, float16 or float64 (<f4, <f2, <f8)"),
        ));
    }
    match (little, kind) {
        (true, "f4") => Ok(DenseDtype::F32),
        (true, "f2") => Ok(DenseDtype::F16),
        (true, "f8") => Ok(DenseDtype::F64),
        _ => Err(Error::format(
            path,
            format!("unsupported dtype {descr}; expected float32, float16 or float64 activations (<f4, <f2, <f8)"),
        )),
    }
}

/// Opens an `.npy` file of activations shaped `[tokens, features]` or
/// `[sequences, seq_len, features]`, in C order or in Fortran (column-major) order (what
/// `np.save` writes for a transposed array such as `acts.T`), read as the same rows.
pub fn open(path: &Path) -> Result<DenseMatrix> {
    let map = super::dense::map_file_expecting(path, "a NumPy .npy array of activations")?;
    let header = parse_header(path, &map)?;
    let dtype = dense_dtype(path, &header.descr)?;
    if header.fortran_order {
        DenseMatrix::new_fortran_order(path, map, header.data_offset, dtype, &header.shape)
    } else {
        DenseMatrix::new(path, map, header.data_offset, dtype, &header.shape)
    }
}

/// Writes a C-order little-endian float32 `.npy` (format 1.0) of `shape`.
pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    if shape.iter().product::<usize>() != data.len() {
        return Err(Error::Invalid(format!(
            "{}: shape {shape:?} holds {} values but {} were given",
            path.display(),
            shape.iter().product::<usize>(),
            data.len()
        )));
    }
    write_bytes(path, "<f4", shape, false, &bytes)
}

/// Writes a format 1.0 `.npy` of `shape` and dtype `descr` (`<f2`, `<f4`, `<i8`, …) from
/// `c_order`, its elements' little-endian bytes in row-major order. With `fortran_order` the
/// file holds them as `np.save` writes a transposed array: element `(i0, …, in)` at flat
/// index `i0 + d0·(i1 + d1·(…))`.
pub fn write_bytes(
    path: &Path,
    descr: &str,
    shape: &[usize],
    fortran_order: bool,
    c_order: &[u8],
) -> Result<()> {
    let n: usize = shape.iter().product();
    let size = c_order.len() / n.max(1);
    if n * size != c_order.len() || (n > 0 && size == 0) {
        return Err(Error::Invalid(format!(
            "{}: shape {shape:?} ({n} elements) does not divide {} bytes",
            path.display(),
            c_order.len()
        )));
    }
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let order = if fortran_order { "True" } else { "False" };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {tuple}, }}");
    // Pad so the data starts on a 64-byte boundary, ending the header with a newline.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    crate::store::write_atomically(path, |w| {
        use std::io::Write;
        w.write_all(MAGIC)?;
        w.write_all(&[1, 0])?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        if !fortran_order {
            return w.write_all(c_order);
        }
        let mut index = vec![0; shape.len()];
        for k in 0..n {
            // File element k is the array element whose first index varies fastest.
            let mut rest = k;
            for (i, &d) in index.iter_mut().zip(shape) {
                *i = rest % d;
                rest /= d;
            }
            let c = index.iter().zip(shape).fold(0, |at, (&i, &d)| at * d + i);
            w.write_all(&c_order[c * size..(c + 1) * size])?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fortran_order_writes_the_first_index_fastest() {
        // [[0, 1, 2], [3, 4, 5]] and, for rank 3, element (i, j, k) = 100i + 10j + k.
        let dir = tempfile::tempdir().unwrap();
        let data = |path: &Path| {
            let b = std::fs::read(path).unwrap();
            let h = parse_header(path, &b).unwrap();
            assert!(h.fortran_order);
            b[h.data_offset..]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect::<Vec<_>>()
        };
        let le = |v: &[u16]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let p = dir.path().join("a.npy");
        write_bytes(&p, "<u2", &[2, 3], true, &le(&[0, 1, 2, 3, 4, 5])).unwrap();
        assert_eq!(data(&p), [0, 3, 1, 4, 2, 5]);
        let c: Vec<u16> = (0..2)
            .flat_map(|i| (0..2).flat_map(move |j| (0..3).map(move |k| 100 * i + 10 * j + k)))
            .collect();
        write_bytes(&p, "<u2", &[2, 2, 3], true, &le(&c)).unwrap();
        assert_eq!(
            data(&p),
            [0, 100, 10, 110, 1, 101, 11, 111, 2, 102, 12, 112]
        );
        assert!(write_bytes(&p, "<u2", &[2, 3], false, &[0; 7]).is_err());
    }

    #[test]
    fn parses_v1_header() {
        let dict = "{'descr': '<f2', 'fortran_order': False, 'shape': (3, 4, 5), }";
        let mut h = Vec::from(MAGIC);
        h.extend([1, 0]);
        h.extend((dict.len() as u16).to_le_bytes());
        h.extend(dict.as_bytes());
        let p = parse_header(Path::new("x.npy"), &h).unwrap();
        assert_eq!(p.descr, "<f2");
        assert_eq!(p.shape, vec![3, 4, 5]);
        assert!(!p.fortran_order);
        assert_eq!(p.data_offset, 10 + dict.len());
    }

    #[test]
    fn a_repeated_key_is_refused() {
        // numpy reads the last `fortran_order` (False), a first-match reader the first.
        for dict in [
            "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), 'fortran_order': False, }",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), \"shape\": (3, 2), }",
        ] {
            let mut h = Vec::from(MAGIC);
            h.extend([1, 0]);
            h.extend((dict.len() as u16).to_le_bytes());
            h.extend(dict.as_bytes());
            let e = parse_header(Path::new("dup.npy"), &h)
                .unwrap_err()
                .to_string();
            assert!(e.contains("dup.npy") && e.contains("more than once"), "{e}");
        }
    }

    #[test]
    fn fortran_order_must_be_exactly_true_or_false() {
        let header = |value: &str| {
            let dict = format!("{{'descr': '<f4', 'fortran_order': {value}, 'shape': (2, 3), }}");
            let mut h = Vec::from(MAGIC);
            h.extend([1, 0]);
            h.extend((dict.len() as u16).to_le_bytes());
            h.extend(dict.as_bytes());
            parse_header(Path::new("f.npy"), &h)
        };
        assert!(header("True").unwrap().fortran_order);
        assert!(!header("False").unwrap().fortran_order);
        assert!(header("True ").unwrap().fortran_order);
        for bad in ["Truex", "False_", "True1", "true", "1"] {
            let e = header(bad).unwrap_err().to_string();
            assert!(e.contains("neither True nor False"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_truncated_header_is_not_called_a_missing_magic() {
        let p = Path::new("cut.npy");
        // Magic present, cut before/inside the header length: truncated, not "not a .npy".
        for bytes in [
            &b"\x93NUMPY"[..],
            b"\x93NUMPY\x01",
            b"\x93NUMPY\x01\x00\x50",
            b"\x93NUMPY\x02\x00\x50\x00",
        ] {
            let e = parse_header(p, bytes).unwrap_err().to_string();
            assert!(
                e.contains("cut.npy") && e.contains("truncated .npy header"),
                "{} bytes: {e}",
                bytes.len()
            );
        }
        let e = parse_header(p, b"PK\x03\x04 not npy")
            .unwrap_err()
            .to_string();
        assert!(e.contains("magic bytes"), "{e}");
    }

    #[test]
    fn a_structured_dtype_is_refused_quoting_only_its_descr() {
        let mut header =
            b"{'descr': [('a','<f4')], 'fortran_order': False, 'shape': (8, 3), }".to_vec();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(&header);
        bytes.extend([0u8; 96]);
        let e = parse_header(Path::new("s.npy"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("structured arrays are not activations (descr [('a','<f4')])"),
            "{e}"
        );
    }

    #[test]
    fn rejects_integer_dtype_with_names() {
        let e = dense_dtype(Path::new("a.npy"), "<i4")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.npy") && e.contains("<i4") && e.contains("float32"),
            "{e}"
        );
    }
}
