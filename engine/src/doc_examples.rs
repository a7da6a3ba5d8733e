//! Keeps the job API documented by example: every public trait, function, type and type
//! alias of the modules a job author uses has a doc example (compiled and run by
//! `cargo test --doc`), and every public method has one of its own or its type's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The job API's source files, under `src/`: what a job author implements and calls.
const API: &[&str] = &[
    "lib.rs",
    "cli.rs",
    "local.rs",
    "pipeline.rs",
    "run.rs",
    "job",
    "input/predicate.rs",
    "input/spec.rs",
    "output/parquet_options.rs",
    "partition",
];

/// Public items of private modules, not part of the API (rustdoc does not show them).
const PRIVATE: &[&str] = &["job/rows/writer.rs"];

/// A public item: its file, line, name, whether it is a method, and whether its doc
/// comment holds an example.
struct Item {
    place: String,
    name: String,
    method_of: Option<String>,
    has_example: bool,
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        entries.iter().for_each(|p| rust_files(p, out));
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// The type an `impl` line implements methods for (`impl<'a> Groups<'a> {` gives `Groups`).
fn impl_type(line: &str) -> Option<String> {
    let rest = line.strip_prefix("impl")?;
    let mut depth = 0;
    let start = rest
        .char_indices()
        .find(|&(_, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            depth == 0 && c.is_alphabetic()
        })?
        .0;
    let name: String = rest[start..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    Some(name)
}

/// The public items of one file, up to its tests.
fn items(src: &Path, file: &Path) -> Vec<Item> {
    let text = std::fs::read_to_string(file).unwrap();
    let lines: Vec<&str> = text.lines().take_while(|l| *l != "#[cfg(test)]").collect();
    let mut found = Vec::new();
    let mut current_impl = None;
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("impl") {
            current_impl = impl_type(line).filter(|_| !line.contains(" for "));
        }
        let trimmed = line.trim_start();
        let Some(rest) = ["pub fn ", "pub trait ", "pub struct ", "pub enum ", "pub type "]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
        else {
            continue;
        };
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let doc =
            lines[..i].iter().rev().map(|l| l.trim()).take_while(|l| {
                l.starts_with("///") || l.starts_with("#[") || l.ends_with(",") || *l == ")]"
            });
        let has_example = doc.into_iter().any(|l| l.starts_with("/// ```"));
        let method_of = (line.len() != trimmed.len()).then(|| current_impl.clone().unwrap_or_default());
        let place = format!("{}:{}", file.strip_prefix(src).unwrap().display(), i + 1);
        found.push(Item { place, name, method_of, has_example });
    }
    found
}

#[test]
fn every_public_item_of_the_job_api_has_a_doc_example() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    API.iter().for_each(|p| rust_files(&src.join(p), &mut files));
    files.retain(|f| !PRIVATE.iter().any(|p| f.ends_with(p)));
    let all: Vec<Item> = files.iter().flat_map(|f| items(&src, f)).collect();
    let with_examples: BTreeSet<&str> =
        all.iter().filter(|i| i.method_of.is_none() && i.has_example).map(|i| i.name.as_str()).collect();
    let missing: Vec<String> = all
        .iter()
        .filter(|i| !i.has_example)
        .filter(|i| i.method_of.as_ref().is_none_or(|t| !with_examples.contains(t.as_str())))
        .map(|i| format!("{} {}", i.place, i.name))
        .collect();
    assert!(all.len() > 100 && with_examples.len() > 40, "the scan finds the API: {} items", all.len());
    assert!(
        missing.is_empty(),
        "public items without a doc example (on the item or its type):\n{}",
        missing.join("\n")
    );
}
