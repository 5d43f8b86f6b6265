//! The IDX format of MNIST and Fashion-MNIST: a 4-byte magic number, one big-endian `u32` per
//! dimension, then the elements in row-major order. Files may be gzip-compressed.

use crate::error::{Error, Result};
use byteorder::{BigEndian, ByteOrder};
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

/// The IDX type code of unsigned bytes, the only element type convlab reads.
pub const UNSIGNED_BYTE: u8 = 0x08;

/// The largest rank accepted. The format allows up to 255 dimensions, but images, labels and
/// image stacks need at most 4, and a larger rank in a data file means a corrupt header.
pub const MAX_RANK: usize = 4;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The contents of an IDX file of unsigned bytes: its dimensions, and `dims.iter().product()`
/// bytes in row-major order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The dimensions the header gives, e.g. `[60000, 28, 28]` for a file of images.
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// Read the IDX file at `path`, plain or gzip-compressed (recognised by its first two bytes,
/// `1f 8b`, whatever its name).
///
/// The header must be `00 00 08 r` (unsigned bytes, rank `r` in `1..=4`) followed by `r`
/// non-zero big-endian `u32` dimensions, and exactly their product of bytes must follow: a file
/// that holds fewer or more is an error. The header is not trusted: memory grows with the bytes
/// the file really holds, so a header claiming billions of elements over a small file (or a gzip
/// stream that would inflate far past what the header allows) fails after reading what is there.
/// Every error is an [`Error::File`] naming `path`.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::file(path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let head = reader
        .fill_buf()
        .map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
    if head.starts_with(&GZIP_MAGIC) {
        parse(MultiGzDecoder::new(reader), path, true)
    } else {
        parse(reader, path, false)
    }
}

/// The name of an IDX element type, for error messages.
fn type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "16-bit integer",
        0x0C => "32-bit integer",
        0x0D => "32-bit float",
        0x0E => "64-bit float",
        _ => return None,
    })
}

/// Fill `buf` from `reader` as far as the stream allows; the number of bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn parse(mut reader: impl Read, path: &Path, gzip: bool) -> Result<Idx> {
    let fail = |reason: String| Error::file(path, reason);
    let io_fail = |e: io::Error| {
        if gzip {
            fail(format!("the gzip stream is corrupt or cut short: {e}"))
        } else {
            fail(format!("cannot read: {e}"))
        }
    };
    let holds = if gzip {
        "decompressed file holds"
    } else {
        "file holds"
    };

    let mut magic = [0u8; 4];
    let got = read_up_to(&mut reader, &mut magic).map_err(io_fail)?;
    if got < magic.len() {
        return Err(fail(format!(
            "truncated: an IDX header needs at least 4 bytes, the {holds} {got}"
        )));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(fail(format!(
            "not an IDX file: it starts with {:#04x} {:#04x}, where an IDX file starts with two \
             zero bytes",
            magic[0], magic[1]
        )));
    }
    if magic[2] != UNSIGNED_BYTE {
        return Err(fail(match type_name(magic[2]) {
            Some(name) => format!(
                "element type {:#04x} ({name}) is not supported: only {UNSIGNED_BYTE:#04x} \
                 (unsigned byte) is",
                magic[2]
            ),
            None => format!(
                "unknown element type {:#04x}: IDX defines 0x08, 0x09 and 0x0b to 0x0e, and only \
                 0x08 (unsigned byte) is supported",
                magic[2]
            ),
        }));
    }
    let rank = usize::from(magic[3]);
    if !(1..=MAX_RANK).contains(&rank) {
        return Err(fail(format!(
            "rank {rank} is not supported: expected 1 to {MAX_RANK} dimensions"
        )));
    }

    let mut raw = [0u8; 4 * MAX_RANK];
    let raw = &mut raw[..4 * rank];
    let got = read_up_to(&mut reader, raw).map_err(io_fail)?;
    if got < raw.len() {
        return Err(fail(format!(
            "truncated: the header of a rank-{rank} IDX file needs {} bytes, the {holds} {}",
            4 + raw.len(),
            4 + got
        )));
    }
    let dims: Vec<usize> = raw
        .chunks_exact(4)
        .map(|d| BigEndian::read_u32(d) as usize)
        .collect();
    if let Some(axis) = dims.iter().position(|&d| d == 0) {
        return Err(fail(format!(
            "dimension {axis} of {dims:?} is 0: every dimension must be at least 1"
        )));
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            fail(format!(
                "dimensions {dims:?} describe more bytes than this machine can address"
            ))
        })?;

    // Read at most one byte past what the header promises: enough to detect trailing data,
    // and the allocation follows what the stream really yields, not the header's claim.
    let mut data = Vec::new();
    reader
        .take((expected as u64).saturating_add(1))
        .read_to_end(&mut data)
        .map_err(io_fail)?;
    if data.len() < expected {
        return Err(fail(format!(
            "truncated: header says {expected} bytes ({dims:?}), {holds} {}",
            data.len()
        )));
    }
    if data.len() > expected {
        return Err(fail(format!(
            "trailing data: header says {expected} bytes ({dims:?}), {holds} more"
        )));
    }
    Ok(Idx { dims, data })
}
