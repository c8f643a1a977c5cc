//! Compressed input, recognised by its first bytes rather than its name, so
//! that a compressed stream on stdin works too.

use std::io::{BufRead, BufReader};

use super::{Input, IoError};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// What compresses a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Recognises the magic bytes at the start of a stream.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if head.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `input` in a decompressor when its first bytes say it is
/// compressed; gives it back untouched otherwise.
pub fn decompressing(mut input: Input) -> Result<Input, IoError> {
    let head = input.fill_buf()?;
    Ok(match Compression::sniff(head) {
        Compression::None => input,
        // Concatenated gzip members (`cat a.gz b.gz`) are one stream.
        Compression::Gzip => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(input),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::with_buffer(input).map_err(IoError::Io)?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Write};

    use super::*;

    fn read_all(bytes: Vec<u8>) -> String {
        let mut out = String::new();
        decompressing(Box::new(Cursor::new(bytes)))
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn plain_gzip_and_zstd_read_the_same() {
        let text = "{\"a\":1}\n{\"b\":2}\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(text.as_bytes(), 3).unwrap();
        assert_eq!(Compression::sniff(&gz), Compression::Gzip);
        assert_eq!(Compression::sniff(&zst), Compression::Zstd);
        assert_eq!(read_all(text.clone().into_bytes()), text);
        assert_eq!(read_all(gz), text);
        assert_eq!(read_all(zst), text);
    }

    #[test]
    fn concatenated_gzip_members_read_as_one_stream() {
        let mut both = Vec::new();
        for part in ["one\n", "two\n"] {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(part.as_bytes()).unwrap();
            both.extend(gz.finish().unwrap());
        }
        assert_eq!(read_all(both), "one\ntwo\n");
    }
}
