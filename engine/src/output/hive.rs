//! Hive-style partitioned output (`--partition-by COL[,COL]`): an attempt writes the rows of
//! each combination of the partition columns' values to its own part file,
//! `COL=value/COL2=value2/part-...`, without those columns (the path holds them), as Hive,
//! Spark and DuckDB lay out partitioned tables and read them back.
//!
//! Names and values are escaped as Hive escapes them ([`escape`]): `%XX` (uppercase hex)
//! for control characters, `"`, `#`, `%`, `'`, `*`, `/`, `:`, `=`, `?`, `\`, DEL, `{`, `[`,
//! `]` and `^`. A null (or empty) value is [`DEFAULT_PARTITION`].

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use tokio::runtime::Handle;

use super::{OutputDir, OutputLayout, PartFile, PartWriter};
use crate::error::{Error, Result};
use crate::ids::PartitionId;

/// The directory value of a null or empty partition value (Hive's).
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Partition directories one attempt may write: each open file holds buffers, so a column
/// with very many values is refused (Hive stops at 100 per node by default).
pub const MAX_PARTITIONS_PER_TASK: usize = 1024;

/// True for the characters Hive escapes in path names.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{0}'
            ..='\u{1f}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '\u{7f}'
                | '{'
                | '['
                | ']'
                | '^'
    )
}

/// `text` as Hive writes it in a path: `%XX` for each character it escapes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The text [`escape`] made `escaped` from (any `%XX` is decoded, as Hive and Spark do).
pub fn unescape(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `COL=value` segment of a partition directory.
pub fn segment(column: &str, value: Option<&str>) -> String {
    let value = match value {
        None | Some("") => DEFAULT_PARTITION.to_owned(),
        Some(value) => escape(value),
    };
    format!("{}={value}", escape(column))
}

/// The column and value of a `COL=value` directory name (`None` value: null), or `None`
/// when it is not one.
pub fn parse_segment(segment: &str) -> Option<(String, Option<String>)> {
    let (column, value) = segment.split_once('=')?;
    if column.is_empty() || column.starts_with(['.', '_']) {
        return None;
    }
    let value = (value != DEFAULT_PARTITION).then(|| unescape(value));
    Some((unescape(column), value))
}

/// True when every directory of `dirs` (`a=1/b=x`) is a `COL=value` segment: what a
/// worker may report as the directories of a partitioned part file.
pub fn is_partition_path(dirs: &str) -> bool {
    dirs.split('/').all(|s| parse_segment(s).is_some() && !s.chars().any(|c| c.is_control()))
}

/// The columns of `schema` named by `partition_by`, checked: each exists once, has a type
/// whose values can name a directory, and at least one column is left for the files.
pub fn partition_columns(schema: &Schema, partition_by: &[String]) -> Result<Vec<usize>> {
    let mut indices = Vec::with_capacity(partition_by.len());
    for column in partition_by {
        let bad = |reason: String| Error::PartitionBy { column: column.clone(), reason };
        let index = schema.index_of(column).map_err(|_| {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            bad(format!("no such output column (the output has: {})", names.join(", ")))
        })?;
        if indices.contains(&index) {
            return Err(bad("named twice".into()));
        }
        let data_type = schema.field(index).data_type();
        if !is_partition_type(data_type) {
            return Err(bad(format!("its type {data_type} cannot name a directory")));
        }
        indices.push(index);
    }
    if !indices.is_empty() && indices.len() == schema.fields().len() {
        return Err(Error::PartitionBy {
            column: partition_by.join(","),
            reason: "every output column is a partition column: the files would hold none".into(),
        });
    }
    Ok(indices)
}

/// Strings, integers, booleans, decimals, floats, dates and times: types that print as text.
fn is_partition_type(data_type: &DataType) -> bool {
    !matches!(
        data_type,
        DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_)
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
            | DataType::Union(..)
            | DataType::Null
    ) && arrow::compute::can_cast_types(data_type, &DataType::Utf8)
}

/// Writes one attempt's rows to a part file per partition directory, each created when
/// its first row comes. All of them are staged; [`PartitionedWriter::close`] returns them
/// for the commit, and dropping the writer discards them all.
pub struct PartitionedWriter {
    io: Handle,
    dir: OutputDir,
    /// The part file's name in each directory.
    file_name: String,
    partition: PartitionId,
    layout: OutputLayout,
    /// The partition columns' indices and names.
    keys: Vec<(usize, String)>,
    /// The other columns' indices: what the files hold.
    data_columns: Vec<usize>,
    data_schema: SchemaRef,
    /// Open files by directory (`a=1/b=x`).
    writers: BTreeMap<String, PartWriter>,
}

impl PartitionedWriter {
    /// Starts the output of `partition`, part files named `file_name`, of rows of `schema`.
    pub fn new(
        io: &Handle,
        dir: &OutputDir,
        file_name: String,
        schema: SchemaRef,
        partition: PartitionId,
        layout: &OutputLayout,
    ) -> Result<Self> {
        let key_indices = partition_columns(&schema, &layout.partition_by)?;
        let data_columns: Vec<usize> =
            (0..schema.fields().len()).filter(|i| !key_indices.contains(i)).collect();
        let data_schema =
            std::sync::Arc::new(schema.project(&data_columns).map_err(Error::arrow("projecting"))?);
        let keys = key_indices.iter().map(|&i| (i, schema.field(i).name().clone())).collect();
        Ok(PartitionedWriter {
            io: io.clone(),
            dir: dir.clone(),
            file_name,
            partition,
            layout: layout.clone(),
            keys,
            data_columns,
            data_schema,
            writers: BTreeMap::new(),
        })
    }

    /// Appends the rows of `batch` to their partitions' files, in order.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let data = batch.project(&self.data_columns).map_err(Error::arrow("projecting"))?;
        let groups = self.group_rows(batch)?;
        if groups.len() == 1 {
            let (dir, _) = groups.into_iter().next().unwrap_or_default();
            return self.writer(&dir)?.write(&data);
        }
        for (dir, rows) in groups {
            let rows =
                take_record_batch(&data, &UInt32Array::from(rows)).map_err(Error::arrow("taking rows"))?;
            self.writer(&dir)?.write(&rows)?;
        }
        Ok(())
    }

    /// The rows of `batch` by partition directory, in first-seen order.
    fn group_rows(&self, batch: &RecordBatch) -> Result<Vec<(String, Vec<u32>)>> {
        let texts = self
            .keys
            .iter()
            .map(|(i, _)| {
                cast(batch.column(*i), &DataType::Utf8).map_err(Error::arrow("formatting a partition value"))
            })
            .collect::<Result<Vec<_>>>()?;
        let texts: Vec<_> = texts.iter().map(|t| t.as_string::<i32>()).collect();
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut dir = String::new();
        for row in 0..batch.num_rows() {
            dir.clear();
            for ((_, name), text) in self.keys.iter().zip(&texts) {
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(&segment(name, text.is_valid(row).then(|| text.value(row))));
            }
            let group = match index.get(dir.as_str()) {
                Some(&group) => group,
                None => {
                    index.insert(dir.clone(), groups.len());
                    groups.push((dir.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            groups[group].1.push(row as u32);
        }
        Ok(groups)
    }

    /// The open file of directory `dir`, created if new.
    fn writer(&mut self, dir: &str) -> Result<&mut PartWriter> {
        if !self.writers.contains_key(dir) {
            if self.writers.len() >= MAX_PARTITIONS_PER_TASK {
                return Err(Error::PartitionBy {
                    column: self.layout.partition_by.join(","),
                    reason: format!(
                        "more than {MAX_PARTITIONS_PER_TASK} partition directories in one task: \
                         partition by columns with fewer values"
                    ),
                });
            }
            let name = format!("{dir}/{}", self.file_name);
            let location = self.dir.file_location(&name)?;
            let writer = PartWriter::create(
                &self.io,
                location,
                name,
                self.data_schema.clone(),
                self.partition,
                &self.layout,
            )?;
            self.writers.insert(dir.to_owned(), writer);
        }
        self.writers.get_mut(dir).ok_or_else(|| Error::Internal("a partition writer vanished".into()))
    }

    /// Finishes every file; returns them in directory order (none if no row came).
    pub fn close(self) -> Result<Vec<PartFile>> {
        self.writers.into_values().map(PartWriter::close).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_as_hive_escapes_them_and_back() {
        assert_eq!(escape("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(escape("50% \"x\"\n"), "50%25 %22x%22%0A");
        assert_eq!(escape("naïve {ok} #1"), "naïve %7Bok} %231");
        for text in ["a/b=c", "50% \"x\"\n", "naïve {ok} #1", "%%", "plain", "tab\there"] {
            assert_eq!(unescape(&escape(text)), text);
        }
        assert_eq!(unescape("100%"), "100%", "a lone % stays");
        assert_eq!(segment("k", None), "k=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(segment("k", Some("")), "k=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(segment("a=b", Some("x/y")), "a%3Db=x%2Fy");
        assert_eq!(parse_segment("a%3Db=x%2Fy"), Some(("a=b".into(), Some("x/y".into()))));
        assert_eq!(parse_segment("k=__HIVE_DEFAULT_PARTITION__"), Some(("k".into(), None)));
        assert_eq!(parse_segment("plain"), None);
        assert_eq!(parse_segment("_k=1"), None);
        assert!(is_partition_path("a=1/b=x%2Fy"));
        assert!(!is_partition_path("a=1/.."));
    }

    #[test]
    fn partition_columns_must_exist_print_and_leave_a_column() {
        use arrow::datatypes::Field;
        let schema = Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
            Field::new("b", DataType::Binary, false),
        ]);
        assert_eq!(partition_columns(&schema, &["n".into(), "k".into()]).unwrap(), [1, 0]);
        for (columns, expected) in [
            (vec!["x"], "no such output column (the output has: k, n, b)"),
            (vec!["k", "k"], "named twice"),
            (vec!["b"], "cannot name a directory"),
        ] {
            let columns: Vec<String> = columns.into_iter().map(String::from).collect();
            let err = partition_columns(&schema, &columns).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("--partition-by"), "{err}");
        }
        let two = Schema::new(vec![Field::new("k", DataType::Utf8, true)]);
        assert!(partition_columns(&two, &["k".into()]).is_err());
    }
}
