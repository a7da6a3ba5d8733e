//! Listing inputs below a directory: visible files, except that a committed output (a
//! directory whose `_SUCCESS` is our manifest) gives exactly the files its manifest lists,
//! and an output that never committed is refused unless the user allows it.

use std::collections::{BTreeSet, HashMap, HashSet};

use object_store::ObjectMeta;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tracing::debug;

use super::{InputFile, Location};
use crate::error::{Error, Result};
use crate::output::{Manifest, SUCCESS_FILE, is_engine_part_name};

/// Lists the files below `root` whose path relative to `root` is visible (no `_` or `.`
/// name) and `wanted`; see [`super::resolve_inputs_with`] for committed and uncommitted
/// outputs.
pub(super) async fn list_inputs(
    root: &Location,
    wanted: impl Fn(&str) -> bool,
    allow_uncommitted: bool,
) -> Result<Vec<InputFile>> {
    let objects = match root.list().await {
        Err(Error::Read { source: object_store::Error::NotFound { .. }, .. }) => Vec::new(),
        other => other?,
    };
    let base = root.path.as_ref();
    let (candidates, others): (Vec<ObjectMeta>, Vec<ObjectMeta>) = objects.into_iter().partition(|meta| {
        let relative = relative_to(&root.path, &meta.location);
        !is_hidden(relative) && wanted(relative)
    });
    let dirs = DirIndex::new(candidates.iter().chain(&others));
    let manifests = read_manifests(root, &dirs, &candidates, base).await?;
    let mut files = Vec::new();
    for meta in candidates {
        let dir = parent(meta.location.as_ref());
        let committed = ancestors(dir, base).find_map(|a| manifests.get(a).map(|names| (a, names)));
        match committed {
            // A manifest lists its files by their path below it (Hive partition directories).
            Some((owner, names)) if names.contains(relative_to_dir(owner, meta.location.as_ref())) => {}
            Some((owner, _)) => {
                let manifest = dir_location(root, owner).child(SUCCESS_FILE).display();
                debug!(file = %root.with_path(meta.location.clone()).display(), %manifest, "not in the _SUCCESS manifest; skipped");
                continue;
            }
            None if !allow_uncommitted && dirs.is_uncommitted(dir) => {
                return Err(Error::UncommittedInput { path: dir_location(root, dir).display() });
            }
            None => {}
        }
        let partitions = hive_partitions(relative_to(&root.path, &meta.location));
        files.push(InputFile { location: root.with_path(meta.location), size: meta.size, partitions });
    }
    Ok(files)
}

/// What each directory directly holds: a `_SUCCESS`, part files (committed or staging).
#[derive(Default)]
struct DirIndex {
    objects: HashSet<String>,
    with_success: HashSet<String>,
    with_parts: HashSet<String>,
}

impl DirIndex {
    fn new<'a>(objects: impl Iterator<Item = &'a ObjectMeta>) -> Self {
        let mut index = DirIndex::default();
        for meta in objects {
            let path = meta.location.as_ref();
            let (dir, name) = (parent(path), file_name(path));
            if name == SUCCESS_FILE {
                index.with_success.insert(dir.to_owned());
            } else if is_engine_part_name(name) {
                index.with_parts.insert(dir.to_owned());
            }
            index.objects.insert(path.to_owned());
        }
        index
    }

    /// Part files of ours (or their staging files) and no `_SUCCESS` of any kind: a job's
    /// output that did not commit. Other tools' `part-0.parquet` are user data.
    fn is_uncommitted(&self, dir: &str) -> bool {
        self.with_parts.contains(dir) && !self.with_success.contains(dir)
    }
}

/// The names listed by the `_SUCCESS` manifests of the directories holding `candidates` or
/// above them (up to `base`), by directory; `_SUCCESS` files that are not our manifest
/// (another tool's empty marker) are left out. A listed file that is missing is an error.
async fn read_manifests(
    root: &Location,
    dirs: &DirIndex,
    candidates: &[ObjectMeta],
    base: &str,
) -> Result<HashMap<String, HashSet<String>>> {
    let relevant: BTreeSet<&str> = candidates
        .iter()
        .flat_map(|meta| ancestors(parent(meta.location.as_ref()), base))
        .filter(|dir| dirs.with_success.contains(*dir))
        .collect();
    let mut manifests = HashMap::new();
    for dir in relevant {
        let location = dir_location(root, dir);
        let Some(manifest) = read_manifest(&location).await? else { continue };
        let names: HashSet<String> = manifest.files.into_iter().map(|f| f.name).collect();
        if let Some(missing) = names.iter().find(|name| !dirs.objects.contains(&join(dir, name))) {
            return Err(Error::InputNotFound { path: location.child(missing).display() });
        }
        manifests.insert(dir.to_owned(), names);
    }
    Ok(manifests)
}

/// The manifest in `dir/_SUCCESS`, or `None` when it is not ours.
async fn read_manifest(dir: &Location) -> Result<Option<Manifest>> {
    let success = dir.child(SUCCESS_FILE);
    let bytes = match success.store().get(success.path()).await {
        Ok(found) => found.bytes().await.map_err(|source| Error::read(success.display(), source))?,
        Err(source) => return Err(Error::read(success.display(), source)),
    };
    match serde_json::from_slice::<Manifest>(&bytes) {
        Ok(manifest) => Ok(Some(manifest)),
        Err(e) => {
            debug!(path = %success.display(), error = %e, "_SUCCESS is not a manifest; reading every file");
            Ok(None)
        }
    }
}

/// `path` below the directory `dir` (a prefix of it).
fn relative_to_dir<'a>(dir: &str, path: &'a str) -> &'a str {
    if dir.is_empty() { path } else { path.strip_prefix(dir).map_or(path, |r| r.trim_start_matches('/')) }
}

/// The Hive partition values of the directories of `relative` (`a=1/b=x/file`), outermost
/// first; none unless every directory is a `COL=value` one.
fn hive_partitions(relative: &str) -> Vec<(String, Option<String>)> {
    let Some((dirs, _)) = relative.rsplit_once('/') else { return Vec::new() };
    let parsed: Option<Vec<_>> = dirs.split('/').map(crate::output::hive::parse_segment).collect();
    parsed.unwrap_or_default()
}

/// `dir`, its parent, ..., up to `base` (included), for `dir` at or below `base`.
fn ancestors<'a>(dir: &'a str, base: &'a str) -> impl Iterator<Item = &'a str> {
    std::iter::successors(Some(dir), move |d| (*d != base && !d.is_empty()).then(|| parent(d)))
}

/// The directory `dir` (a prefix of a listed path) in `root`'s store.
fn dir_location(root: &Location, dir: &str) -> Location {
    root.with_path(Path::parse(dir).unwrap_or_else(|_| Path::from(dir)))
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

/// `path` below `root`, without the leading `/`.
pub(crate) fn relative_to<'a>(root: &Path, path: &'a Path) -> &'a str {
    let path = path.as_ref();
    let root = root.as_ref();
    path.strip_prefix(root).map(|r| r.trim_start_matches('/')).unwrap_or(path)
}

/// True when a name in `relative` starts with `_` or `.` (Hadoop's hidden files).
pub(super) fn is_hidden(relative: &str) -> bool {
    relative.split('/').any(|part| part.starts_with('_') || part.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use std::path::Path as FsPath;

    use super::*;
    use crate::ids::{AttemptId, JobId, PartitionId};
    use crate::job::Counters;
    use crate::output::{OutputLayout, PartFile, part_name};
    use crate::storage::{resolve_inputs, resolve_inputs_with, staging_name};

    const THIS: &str = "job-20260101T000000-0001";
    const OTHER: &str = "job-20260101T000000-0002";

    fn part(partition: u32, job: &str) -> String {
        let job = JobId::from_string(job.to_owned());
        part_name(PartitionId(partition), &job, AttemptId(0), &OutputLayout::default())
    }

    fn touch(dir: &FsPath, name: &str) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    /// Writes the `_SUCCESS` manifest of `THIS` listing `names` (partitions in order).
    fn commit(dir: &FsPath, names: &[String]) {
        let parts: Vec<PartFile> = (0..)
            .zip(names)
            .map(|(i, name)| PartFile {
                partition: PartitionId(i),
                name: name.clone(),
                rows: 1,
                bytes: 1,
                staged: crate::output::Staged::LocalFile,
            })
            .collect();
        let manifest = Manifest::new("test", THIS, &parts, Counters::default());
        std::fs::write(dir.join(SUCCESS_FILE), serde_json::to_vec(&manifest).unwrap()).unwrap();
    }

    /// The files `input` resolves to, relative to `dir`.
    async fn listed(dir: &FsPath, input: &str, allow_uncommitted: bool) -> Result<Vec<String>> {
        let input =
            if input.is_empty() { dir.display().to_string() } else { format!("{}/{input}", dir.display()) };
        let files = resolve_inputs_with(&[input], &Default::default(), allow_uncommitted).await?;
        let prefix = format!("{}/", dir.display());
        Ok(files.iter().map(|f| f.display().strip_prefix(&prefix).unwrap().to_owned()).collect())
    }

    #[tokio::test]
    async fn a_committed_output_gives_exactly_the_files_its_manifest_lists() {
        let dir = tempfile::tempdir().unwrap();
        let listed_parts = [part(0, THIS), part(1, THIS)];
        for name in
            [&listed_parts[0], &listed_parts[1], &part(0, OTHER), &"notes.txt".into(), &"sub/x.txt".into()]
        {
            touch(&dir.path().join("out"), name);
        }
        commit(&dir.path().join("out"), &listed_parts);
        let expected: Vec<String> = listed_parts.iter().map(|p| format!("out/{p}")).collect();
        assert_eq!(listed(dir.path(), "out", false).await.unwrap(), expected);
        assert_eq!(listed(dir.path(), "out/*.parquet", false).await.unwrap(), expected, "globs too");

        touch(dir.path(), "data.txt");
        let mut with_data = vec!["data.txt".to_owned()];
        with_data.extend(expected.iter().cloned());
        assert_eq!(listed(dir.path(), "", false).await.unwrap(), with_data, "met while listing a parent");
    }

    #[tokio::test]
    async fn a_manifest_listing_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), &part(0, THIS));
        commit(dir.path(), &[part(0, THIS), part(1, THIS)]);
        let err = listed(dir.path(), "", false).await.unwrap_err();
        assert!(matches!(err, Error::InputNotFound { ref path } if path.ends_with(&part(1, THIS))), "{err}");
    }

    #[tokio::test]
    async fn an_output_that_did_not_commit_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("partial"), &part(0, OTHER));
        touch(&dir.path().join("staging"), &staging_name(&part(0, THIS)));
        touch(&dir.path().join("staging"), "a.txt");
        for name in ["partial", "staging"] {
            let err = listed(dir.path(), name, false).await.unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!(
                    "{}/{name} is not a committed output (no _SUCCESS); pass --allow-uncommitted to read it anyway",
                    dir.path().display()
                )
            );
        }
        assert_eq!(
            listed(dir.path(), "partial", true).await.unwrap(),
            [format!("partial/{}", part(0, OTHER))]
        );
        assert_eq!(listed(dir.path(), "staging", true).await.unwrap(), ["staging/a.txt"]);
        let input = format!("{}/partial/{}", dir.path().display(), part(0, OTHER));
        assert_eq!(
            resolve_inputs(&[input], &Default::default()).await.unwrap().len(),
            1,
            "a file named itself"
        );
    }

    #[tokio::test]
    async fn plain_directories_and_foreign_success_markers_read_every_visible_file() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.txt", "part-0.parquet", "sub/b.txt", "_logs/c.txt", ".hidden"] {
            touch(&dir.path().join("plain"), name);
        }
        assert_eq!(
            listed(dir.path(), "plain", false).await.unwrap(),
            ["plain/a.txt", "plain/part-0.parquet", "plain/sub/b.txt"],
            "other tools' part names are user data"
        );

        let spark = dir.path().join("spark");
        for name in [part(0, THIS), part(0, OTHER), "a.txt".into()] {
            touch(&spark, &name);
        }
        std::fs::write(spark.join(SUCCESS_FILE), b"").unwrap();
        let mut expected = vec![format!("spark/{}", part(0, THIS)), format!("spark/{}", part(0, OTHER))];
        expected.sort();
        expected.insert(0, "spark/a.txt".into());
        assert_eq!(listed(dir.path(), "spark", false).await.unwrap(), expected);
    }

    #[test]
    fn ancestors_stop_at_the_base() {
        assert_eq!(ancestors("a/b/c", "a").collect::<Vec<_>>(), ["a/b/c", "a/b", "a"]);
        assert_eq!(ancestors("a", "a").collect::<Vec<_>>(), ["a"]);
        assert_eq!(ancestors("a/b", "").collect::<Vec<_>>(), ["a/b", "a", ""]);
    }
}
