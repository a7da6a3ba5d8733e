//! How Parquet part files are written: the codec (`--compression`) and the rows per row
//! group (`--row-group-size`). A job states its defaults ([`crate::job::Job::parquet_output`]);
//! the flags, when given, override them.

use std::fmt;
use std::str::FromStr;

use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::errors::ParquetError;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Rows per row group unless the job or `--row-group-size` says otherwise: bounds what a
/// writer buffers.
pub const DEFAULT_ROW_GROUP_ROWS: usize = 128 * 1024;

/// The codec of a Parquet part file's pages. Written and parsed as `snappy`, `zstd`,
/// `zstd:LEVEL`, `gzip`, `gzip:LEVEL`, `lz4` or `none`.
///
/// ```
/// use gristmill::output::Codec;
///
/// let codec: Codec = "zstd:3".parse()?;
/// assert_eq!(codec, Codec::Zstd(Some(3)));
/// assert_eq!(codec.to_string(), "zstd:3");
/// assert!(codec.to_parquet().is_ok());
/// assert!(Codec::Gzip(Some(99)).to_parquet().is_err());
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Codec {
    /// Snappy.
    Snappy,
    /// Zstandard at a level (up to 22; negative levels trade ratio for speed), or the
    /// library's default level (the default codec).
    Zstd(Option<i32>),
    /// Gzip at a level (0-9), or the library's default level.
    Gzip(Option<u32>),
    /// LZ4 in Parquet's `LZ4_RAW` framing (the legacy Hadoop framing is read only).
    Lz4,
    /// Uncompressed.
    None,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::Zstd(None)
    }
}

impl Codec {
    /// The parquet crate's setting; an error names a level out of range.
    pub fn to_parquet(self) -> Result<Compression> {
        self.compression().map_err(|e| Error::Config(format!("codec {self}: {e}")))
    }

    fn compression(self) -> std::result::Result<Compression, ParquetError> {
        Ok(match self {
            Codec::Snappy => Compression::SNAPPY,
            Codec::Zstd(level) => {
                Compression::ZSTD(level.map(ZstdLevel::try_new).transpose()?.unwrap_or_default())
            }
            Codec::Gzip(level) => {
                Compression::GZIP(level.map(GzipLevel::try_new).transpose()?.unwrap_or_default())
            }
            Codec::Lz4 => Compression::LZ4_RAW,
            Codec::None => Compression::UNCOMPRESSED,
        })
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Codec::Snappy => f.write_str("snappy"),
            Codec::Zstd(None) => f.write_str("zstd"),
            Codec::Zstd(Some(level)) => write!(f, "zstd:{level}"),
            Codec::Gzip(None) => f.write_str("gzip"),
            Codec::Gzip(Some(level)) => write!(f, "gzip:{level}"),
            Codec::Lz4 => f.write_str("lz4"),
            Codec::None => f.write_str("none"),
        }
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (name, level) = match lower.split_once(':') {
            Some((name, level)) => (name, Some(level)),
            None => (lower.as_str(), None),
        };
        let codec = match (name, level) {
            ("snappy", None) => Codec::Snappy,
            ("zstd", level) => Codec::Zstd(level.map(|l| parse_level(l, text)).transpose()?),
            ("gzip", level) => Codec::Gzip(level.map(|l| parse_level(l, text)).transpose()?),
            ("lz4", None) => Codec::Lz4,
            ("none" | "uncompressed", None) => Codec::None,
            ("snappy" | "lz4" | "none" | "uncompressed", Some(_)) => {
                return Err(format!("{name} takes no level: `{text}`"));
            }
            _ => {
                return Err(format!(
                    "unknown codec `{text}` (use snappy, zstd[:level], gzip[:level], lz4, none)"
                ));
            }
        };
        // Refuse a level out of range here, at the flag, rather than in a task.
        codec.compression().map_err(|e| format!("`{text}`: {e}"))?;
        Ok(codec)
    }
}

fn parse_level<T: FromStr>(level: &str, text: &str) -> std::result::Result<T, String> {
    level.parse().map_err(|_| format!("`{level}` is not a level in `{text}`"))
}

impl TryFrom<String> for Codec {
    type Error = String;

    fn try_from(text: String) -> std::result::Result<Self, String> {
        text.parse()
    }
}

impl From<Codec> for String {
    fn from(codec: Codec) -> String {
        codec.to_string()
    }
}

/// How a job's Parquet part files are written.
///
/// What [`Job::parquet_output`](crate::job::Job::parquet_output) returns; `--compression`
/// and `--row-group-size` override it.
///
/// ```
/// use gristmill::output::{Codec, DEFAULT_ROW_GROUP_ROWS, ParquetOutput};
///
/// // Snappy and small row groups, for output read back selectively.
/// let output = ParquetOutput::default().with_compression(Codec::Snappy).with_row_group_rows(16 * 1024);
/// assert_eq!((output.compression, output.row_group_rows), (Codec::Snappy, 16384));
/// assert_eq!(ParquetOutput::default().row_group_rows, DEFAULT_ROW_GROUP_ROWS);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetOutput {
    /// The pages' codec.
    pub compression: Codec,
    /// Rows per row group.
    pub row_group_rows: usize,
}

impl Default for ParquetOutput {
    fn default() -> Self {
        ParquetOutput { compression: Codec::default(), row_group_rows: DEFAULT_ROW_GROUP_ROWS }
    }
}

impl ParquetOutput {
    /// Sets the codec.
    pub fn with_compression(mut self, codec: Codec) -> Self {
        self.compression = codec;
        self
    }

    /// Sets the rows per row group (at least 1).
    pub fn with_row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codecs_parse_print_and_map_to_parquet() {
        let cases = [
            ("snappy", Codec::Snappy, Compression::SNAPPY),
            ("zstd", Codec::Zstd(None), Compression::ZSTD(ZstdLevel::default())),
            ("ZSTD:7", Codec::Zstd(Some(7)), Compression::ZSTD(ZstdLevel::try_new(7).unwrap())),
            ("gzip", Codec::Gzip(None), Compression::GZIP(GzipLevel::default())),
            ("gzip:9", Codec::Gzip(Some(9)), Compression::GZIP(GzipLevel::try_new(9).unwrap())),
            ("lz4", Codec::Lz4, Compression::LZ4_RAW),
            ("none", Codec::None, Compression::UNCOMPRESSED),
        ];
        for (text, codec, parquet) in cases {
            assert_eq!(text.parse::<Codec>(), Ok(codec), "{text}");
            assert_eq!(codec.to_parquet().unwrap(), parquet);
            assert_eq!(codec.to_string().parse::<Codec>(), Ok(codec), "printed form parses back");
            let json = serde_json::to_string(&codec).unwrap();
            assert_eq!(serde_json::from_str::<Codec>(&json).unwrap(), codec);
        }
        for bad in ["zstd:99", "gzip:10", "gzip:x", "lzo", "snappy:1", ""] {
            assert!(bad.parse::<Codec>().is_err(), "{bad}");
        }
        assert_eq!(ParquetOutput::default().compression, Codec::Zstd(None));
    }
}
