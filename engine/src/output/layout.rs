//! [`OutputLayout`]: how a job's part files are written — format, codecs, and the Hive
//! partition columns — resolved from the job's defaults and the flags before the job runs,
//! and carried to every task.

use serde::{Deserialize, Serialize};

use super::{Codec, OutputFormat, ParquetOutput};
use crate::error::{Error, Result};

/// How a job's part files are written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLayout {
    /// The format of every part file.
    pub format: OutputFormat,
    /// How Parquet part files are written (codec, rows per row group).
    pub parquet: ParquetOutput,
    /// The codec of CSV and JSON lines part files: `None`, gzip or zstd.
    #[serde(default = "no_codec")]
    pub text_codec: Codec,
    /// Hive partition columns (`--partition-by`): each part file holds the rows of one
    /// combination of their values, under `COL=value/`, without those columns.
    #[serde(default)]
    pub partition_by: Vec<String>,
}

fn no_codec() -> Codec {
    Codec::None
}

impl OutputLayout {
    /// Parquet files written with `parquet`, not partitioned.
    pub fn parquet(parquet: ParquetOutput) -> Self {
        OutputLayout {
            format: OutputFormat::Parquet,
            parquet,
            text_codec: Codec::None,
            partition_by: Vec::new(),
        }
    }

    /// Raw records (TeraSort's format).
    pub fn records() -> Self {
        OutputLayout { format: OutputFormat::Records, ..OutputLayout::parquet(ParquetOutput::default()) }
    }

    /// The same layout in `format`.
    pub fn with_format(mut self, format: OutputFormat) -> Self {
        self.format = format;
        self
    }

    /// Compresses CSV and JSON lines part files with `codec`: gzip, zstd or none. Other
    /// codecs are Parquet's only, and refused.
    pub fn with_text_codec(mut self, codec: Codec) -> Result<Self> {
        if !matches!(codec, Codec::None | Codec::Gzip(_) | Codec::Zstd(_)) {
            return Err(Error::Config(format!(
                "--compression {codec} is a Parquet codec; CSV and JSON output take gzip, zstd or none"
            )));
        }
        self.text_codec = codec;
        Ok(self)
    }

    /// Partitions the output by `columns` (Hive style).
    pub fn with_partition_by(mut self, columns: Vec<String>) -> Self {
        self.partition_by = columns;
        self
    }

    /// The suffix a compressed text part file gets after its format's extension.
    pub(super) fn text_suffix(&self) -> &'static str {
        match (self.format.is_text(), self.text_codec) {
            (true, Codec::Gzip(_)) => ".gz",
            (true, Codec::Zstd(_)) => ".zst",
            _ => "",
        }
    }

    /// The codec the manifest records for Parquet part files.
    pub fn parquet_codec(&self) -> Codec {
        self.parquet.compression
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_codecs_are_gzip_zstd_or_none_and_old_payloads_parse() {
        let csv = OutputLayout::default().with_format(OutputFormat::Csv);
        assert_eq!(csv.clone().with_text_codec(Codec::Zstd(Some(3))).unwrap().text_suffix(), ".zst");
        assert_eq!(csv.clone().with_text_codec(Codec::None).unwrap().text_suffix(), "");
        let err = csv.with_text_codec(Codec::Snappy).unwrap_err().to_string();
        assert!(err.contains("snappy") && err.contains("gzip"), "{err}");
        let old: OutputLayout = serde_json::from_str(
            r#"{"format":"parquet","parquet":{"compression":"zstd","row_group_rows":5}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((old.text_codec, old.partition_by.len()), (Codec::None, 0));
    }
}
