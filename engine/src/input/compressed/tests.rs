use std::io::Write;
use std::sync::Arc;

use arrow::array::StringArray;

use super::*;
use crate::error::ErrorKind;
use crate::input::TextShape;
use crate::input::{BadRecords, InputFormat, text};
use crate::storage::Location;

const CODECS: [Codec; 4] = [Codec::Gzip, Codec::Zstd, Codec::Bzip2, Codec::Xz];

fn extension(codec: Codec) -> &'static str {
    match codec {
        Codec::Gzip => "gz",
        Codec::Zstd => "zst",
        Codec::Bzip2 => "bz2",
        Codec::Xz => "xz",
    }
}

fn compress(codec: Codec, data: &[u8]) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
        Codec::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Codec::Xz => {
            let mut w = lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(0)).unwrap();
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
    }
}

/// Lines of 0..=300 bytes, every fifth `\r\n`-terminated; and the lines.
fn sample(lines: usize) -> (Vec<u8>, Vec<String>) {
    let (mut data, mut expected) = (Vec::new(), Vec::new());
    for i in 0..lines {
        let line: String =
            (0..(i * 7919) % 301).map(|j| (b'a' + ((i * 31 + j) % 26) as u8) as char).collect();
        data.extend_from_slice(line.as_bytes());
        data.extend_from_slice(if i % 5 == 0 { b"\r\n" } else { b"\n" });
        expected.push(line);
    }
    (data, expected)
}

/// `bytes` written to a file named `name` in `dir`.
fn input(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> Arc<InputFile> {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let location = Location::parse(path.to_str().unwrap()).unwrap();
    Arc::new(InputFile::new(location, bytes.len() as u64))
}

/// Every line of `file`'s splits (planned small, codec by extension), the splits and the
/// bytes they read.
fn read(file: &Arc<InputFile>, shape: TextShape, options: ReadOptions) -> Result<(Vec<String>, usize, u64)> {
    let io = tokio::runtime::Runtime::new().unwrap();
    let codec = Codec::from_name(&file.display());
    let (mut lines, mut splits, mut bytes) = (Vec::new(), 0, 0);
    for split in text::plan(file, 100, shape, codec) {
        splits += 1;
        bytes += split.read(io.handle(), options, &BadRecords::new(0), &mut |batch| {
            let column = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            for value in column.iter().map(Option::unwrap) {
                match shape {
                    TextShape::Lines => lines.push(value.to_owned()),
                    TextShape::Chunks => lines.extend(value.lines().map(str::to_owned)),
                }
            }
            Ok(true)
        })?;
    }
    Ok((lines, splits, bytes))
}

fn read_lines(file: &Arc<InputFile>) -> Result<Vec<String>> {
    read(file, TextShape::Lines, ReadOptions::default()).map(|(lines, _, _)| lines)
}

#[test]
fn every_codec_reads_the_same_lines_in_one_split_past_a_chunk() {
    let (data, expected) = sample(35_000);
    assert!(data.len() as u64 > CHUNK_BYTES);
    let dir = tempfile::tempdir().unwrap();
    for codec in CODECS {
        let file = input(&dir, &format!("lines.txt.{}", extension(codec)), &compress(codec, &data));
        for shape in [TextShape::Lines, TextShape::Chunks] {
            let (lines, splits, bytes) = read(&file, shape, ReadOptions::default()).unwrap();
            assert!(lines == expected, "{codec:?} {shape:?}: {} lines of {}", lines.len(), expected.len());
            assert_eq!(splits, 1, "{codec:?}: a compressed file is one split");
            assert_eq!(bytes, data.len() as u64, "{codec:?}: the decompressed bytes are counted");
        }
    }
}

#[test]
fn concatenated_members_and_frames_are_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for codec in CODECS {
        // The first part ends without a newline: its last line goes on in the second.
        let mut bytes = compress(codec, b"one\r\ntwo\nthr");
        bytes.extend(compress(codec, b"ee\n\nfour"));
        bytes.extend(compress(codec, b""));
        let file = input(&dir, &format!("cat.{}", extension(codec)), &bytes);
        assert_eq!(read_lines(&file).unwrap(), ["one", "two", "three", "", "four"], "{codec:?}");
    }
}

#[test]
fn empty_streams_and_empty_files_have_no_lines() {
    let dir = tempfile::tempdir().unwrap();
    for codec in CODECS {
        let file = input(&dir, &format!("empty.{}", extension(codec)), &compress(codec, b""));
        assert_eq!(read_lines(&file).unwrap(), Vec::<String>::new(), "{codec:?}");
        let file = input(&dir, &format!("zero.{}", extension(codec)), b"");
        let (lines, splits, _) = read(&file, TextShape::Lines, ReadOptions::default()).unwrap();
        assert_eq!((lines.len(), splits), (0, 0), "{codec:?}: a 0-byte file has no split");
    }
}

/// The error reading `bytes` as `name`, checked to be non-retryable corrupt input.
fn read_error(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> (Error, String) {
    let file = input(dir, name, bytes);
    let error = read_lines(&file).expect_err(name);
    assert_eq!(error.kind(), ErrorKind::CorruptInput, "{error}");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(message.contains(&file.display()), "{message}");
    (error, message)
}

#[test]
fn truncated_input_fails_naming_the_file_and_the_compressed_offset() {
    let (data, _) = sample(3_000);
    let dir = tempfile::tempdir().unwrap();
    for codec in CODECS {
        let whole = compress(codec, &data);
        let cut = whole.len() / 2;
        let name = format!("cut.{}", extension(codec));
        let (error, message) = read_error(&dir, &name, &whole[..cut]);
        let Error::CorruptCompressed { problem, offset, .. } = error else { panic!("{message}") };
        assert_eq!(problem, "truncated", "{message}");
        assert!(offset > 0 && offset <= cut as u64, "{message}");
        let expected = format!("truncated {} stream in ", codec.name());
        assert!(message.starts_with(&expected), "{message}");
        assert!(message.contains(&format!("at compressed byte {offset}")), "{message}");
    }
}

#[test]
fn corrupt_input_fails_as_corrupt() {
    let (data, _) = sample(3_000);
    let dir = tempfile::tempdir().unwrap();
    for codec in CODECS {
        // A second frame or member whose magic bytes are wrong.
        let mut bytes = compress(codec, &data);
        let first = bytes.len();
        bytes.extend(compress(codec, &data));
        bytes[first] ^= 0xff;
        let (error, message) = read_error(&dir, &format!("bad.{}", extension(codec)), &bytes);
        let Error::CorruptCompressed { problem, offset, .. } = error else { panic!("{message}") };
        assert_eq!(problem, "corrupt", "{message}");
        assert!(offset >= first as u64 - 64 && offset <= bytes.len() as u64, "{codec:?}: {message}");
    }
    // A damaged gzip body fails its CRC.
    let mut bytes = compress(Codec::Gzip, &data);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let (_, message) = read_error(&dir, "crc.gz", &bytes);
    assert!(message.starts_with("corrupt gzip stream in "), "{message}");
}

#[test]
fn invalid_utf8_after_decompression_is_reported_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let file = input(&dir, "bad-utf8.gz", &compress(Codec::Gzip, b"ok\nb\xffd\n"));
    let error = read_lines(&file).unwrap_err();
    assert!(matches!(error, Error::InvalidUtf8 { offset: 4, .. }), "{error}");
    let options = ReadOptions { replace_invalid_utf8: true };
    let (lines, _, _) = read(&file, TextShape::Lines, options).unwrap();
    assert_eq!(lines, ["ok", "b\u{fffd}d"]);
}

#[test]
fn codecs_are_named_by_extension_or_by_magic_bytes() {
    assert_eq!(Codec::from_name("logs/a.log.gz"), Some(Codec::Gzip));
    assert_eq!(Codec::from_name("A.ZST"), Some(Codec::Zstd));
    assert_eq!(Codec::from_name("a.zstd"), Some(Codec::Zstd));
    assert_eq!(Codec::from_name("a.bz2"), Some(Codec::Bzip2));
    assert_eq!(Codec::from_name("a.xz"), Some(Codec::Xz));
    assert_eq!(Codec::from_name("a.txt"), None);
    assert_eq!(Codec::from_name("gz"), None);
    for codec in CODECS {
        assert_eq!(Codec::sniff(&compress(codec, b"text\n")), Some(codec));
        assert_eq!(Codec::sniff(&compress(codec, b"")), Some(codec), "{codec:?}: empty stream");
    }
    for plain in [&b""[..], b"\x1f", b"BZh9 plain text", b"hello world\n"] {
        assert_eq!(Codec::sniff(plain), None, "{plain:?}");
    }
}

#[test]
fn forced_text_without_an_extension_is_sniffed() {
    let dir = tempfile::tempdir().unwrap();
    let io = tokio::runtime::Runtime::new().unwrap();
    let zipped = input(&dir, "events", &compress(Codec::Gzip, b"a\n"));
    let plain = input(&dir, "plain", b"a\n");
    let codec = |file, forced| io.block_on(crate::input::text_codec(file, forced)).unwrap();
    assert_eq!(codec(&zipped, Some(InputFormat::Text)), Some(Codec::Gzip));
    assert_eq!(codec(&zipped, None), None, "only a forced format is sniffed");
    assert_eq!(codec(&plain, Some(InputFormat::Text)), None);
}

#[test]
fn lines_of_a_compressed_file_are_counted_forward_and_again_after_a_step_back() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _) = sample(3000);
    let io = tokio::runtime::Runtime::new().unwrap();
    let line_of = |offset: usize| data[..offset].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let offsets = [0, 17, 4000, 150_000, data.len() - 1, 9000, 9001];
    for codec in CODECS {
        let file = input(&dir, &format!("lines.{}", extension(codec)), &compress(codec, &data));
        let mut lines = crate::input::bad::LineCounter::new(&file, io.handle(), Some(codec));
        for offset in offsets {
            assert_eq!(lines.line_at(offset as u64), Some(line_of(offset)), "{codec:?}, offset {offset}");
        }
    }
}
