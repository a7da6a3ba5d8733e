//! Inverted index against a sequential oracle (`BTreeMap<word, BTreeSet<doc_id>>`) on
//! skewed documents: a few words in almost every document, a Zipf tail, repeated words,
//! empty and null texts, documents split over two rows, doc ids across the whole u64 range,
//! many row groups, small splits and several reducers.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use gristmill_jobs::sample::{SplitMix64, Zipf, word};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::record::Field as ParquetField;

use crate::support::*;

/// One input row: a doc id and its text (`None` is a null text).
type Document = (u64, Option<String>);

/// Documents with skewed words; some rows repeat an earlier doc id (a document in two rows).
pub(crate) fn documents(count: usize, seed: u64) -> Vec<Document> {
    let mut rng = SplitMix64::new(seed);
    let zipf = Zipf::new(3000, 1.1);
    let spaces = [" ", " ", "  ", "\t", "\n", "\u{3000}"];
    let mut docs: Vec<Document> = Vec::with_capacity(count);
    for _ in 0..count {
        let id = match rng.below(20) {
            0 if !docs.is_empty() => docs[rng.below(docs.len() as u64) as usize].0,
            _ => rng.next_u64(), // half of them above i64::MAX
        };
        let mut words: Vec<String> = Vec::new();
        for common in ["the", "of", "and"] {
            if rng.below(50) != 0 {
                words.push(common.to_owned());
            }
        }
        for _ in 0..rng.below(40) {
            words.push(word(zipf.sample(&mut rng)));
        }
        let text = match rng.below(30) {
            0 => None,
            1 => Some(String::new()),
            _ => Some(words.iter().fold(String::new(), |mut text, w| {
                text.push_str(spaces[rng.below(spaces.len() as u64) as usize]);
                text.push_str(w);
                text
            })),
        };
        docs.push((id, text));
    }
    docs
}

pub(crate) fn write_documents(path: &Path, docs: &[Document], rows_per_group: usize) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::UInt64, false),
        Field::new("text", DataType::Utf8, true),
    ]));
    let props = WriterProperties::builder().set_max_row_group_row_count(Some(rows_per_group)).build();
    let mut writer = ArrowWriter::try_new(File::create(path).unwrap(), schema.clone(), Some(props)).unwrap();
    for chunk in docs.chunks(rows_per_group) {
        let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|d| d.0)));
        let texts: ArrayRef = Arc::new(chunk.iter().map(|d| d.1.as_deref()).collect::<StringArray>());
        writer.write(&RecordBatch::try_new(schema.clone(), vec![ids, texts]).unwrap()).unwrap();
    }
    writer.close().unwrap();
}

/// The sequential oracle: word -> its documents, and the number of word occurrences.
fn oracle(docs: &[Document]) -> (BTreeMap<String, BTreeSet<u64>>, u64) {
    let (mut index, mut occurrences) = (BTreeMap::<String, BTreeSet<u64>>::new(), 0);
    for (id, text) in docs {
        for w in text.as_deref().unwrap_or("").split_whitespace() {
            index.entry(w.to_owned()).or_default().insert(*id);
            occurrences += 1;
        }
    }
    (index, occurrences)
}

/// Reads an inverted-index output back as word -> doc ids, checking each part is sorted by
/// word, no word is in two rows, and `doc_count` is the list's length.
fn read_index(dir: &Path) -> BTreeMap<String, Vec<u64>> {
    let mut index = BTreeMap::new();
    for (name, rows) in &read_committed(dir).parts {
        let words: Vec<&String> = rows.iter().map(|r| as_str(&r[0])).collect();
        assert!(words.windows(2).all(|w| w[0] < w[1]), "{name} is sorted by word, without duplicates");
        for row in rows {
            let ParquetField::ULong(count) = row[1] else {
                panic!("doc_count is not a UInt64: {:?}", row[1])
            };
            let ParquetField::ListInternal(list) = &row[2] else {
                panic!("doc_ids is not a list: {:?}", row[2])
            };
            let ids: Vec<u64> = list
                .elements()
                .iter()
                .map(|f| match f {
                    ParquetField::ULong(id) => *id,
                    other => panic!("a doc id is not a UInt64: {other:?}"),
                })
                .collect();
            assert_eq!(count, ids.len() as u64, "doc_count of {}", as_str(&row[0]));
            assert!(index.insert(as_str(&row[0]).clone(), ids).is_none(), "a word in two partitions");
        }
    }
    index
}

#[test]
fn inverted_index_equals_the_oracle_on_skewed_documents() {
    let dir = tempfile::tempdir().unwrap();
    let docs = documents(4000, 7);
    let input = dir.path().join("docs.parquet");
    write_documents(&input, &docs, 250);
    let (expected, occurrences) = oracle(&docs);
    let expected: BTreeMap<String, Vec<u64>> =
        expected.into_iter().map(|(w, ids)| (w, ids.into_iter().collect())).collect();
    assert!(expected["the"].len() > 3300 && expected.len() > 1000, "skewed: common words and a long tail");

    for (threads, reducers, split) in [("2", "4", "1"), ("1", "1", "64MiB"), ("2", "7", "20000")] {
        let out = dir.path().join(format!("out-{threads}-{reducers}-{split}"));
        let args = ["--input", s(&input), "--output", s(&out), "--threads", threads, "--reducers", reducers];
        run_ok("inverted-index", &[&args[..], &["--split-size", split]].concat());
        let got = read_index(&out);
        let wrong = expected.iter().find(|(w, ids)| got.get(*w) != Some(ids));
        assert!(
            wrong.is_none() && got.len() == expected.len(),
            "threads {threads}, reducers {reducers}, split {split}: {} words, expected {}; first wrong: \
             {wrong:?}, got {:?}",
            got.len(),
            expected.len(),
            wrong.map(|(w, _)| got.get(w)),
        );
        let output = read_committed(&out);
        assert_eq!(output.manifest.files.len(), reducers.parse::<usize>().unwrap());
        let counters = &output.manifest.counters;
        // Mappers combine: at most one row per distinct word of a split is shuffled.
        let shuffled = counters.get("map_output_records");
        assert!(shuffled < occurrences / 2, "{shuffled} rows shuffled for {occurrences} word occurrences");
        assert_eq!(counters.get("reduce_input_records"), shuffled);
    }
}

#[test]
fn inverted_index_rejects_documents_without_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("doc_id", DataType::UInt64, true),
        Field::new("text", DataType::Utf8, true),
    ]));
    let ids: ArrayRef = Arc::new(UInt64Array::from(vec![Some(1), None]));
    let texts: ArrayRef = Arc::new(StringArray::from(vec!["a b", "c"]));
    let mut writer = ArrowWriter::try_new(File::create(&path).unwrap(), schema.clone(), None).unwrap();
    writer.write(&RecordBatch::try_new(schema, vec![ids, texts]).unwrap()).unwrap();
    writer.close().unwrap();
    let err = run_err("inverted-index", &["--input", s(&path), "--output", s(&dir.path().join("out"))]);
    assert!(err.contains("1 documents have a null doc_id") && err.contains("docs.parquet"), "{err}");
}
