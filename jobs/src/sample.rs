//! Sample text: lines of words drawn from a Zipf distribution over a synthetic vocabulary,
//! reproducible from a seed (the shape of natural-language word frequencies).

use std::io::Write;
use std::path::Path;

/// What to generate.
#[derive(Clone, Debug)]
pub struct TextSpec {
    /// Total bytes (approximately: whole lines).
    pub bytes: u64,
    /// Files to spread them over.
    pub files: usize,
    /// Distinct words.
    pub vocabulary: usize,
    /// Zipf exponent (1.0 is natural language).
    pub exponent: f64,
    /// Seed of the generator.
    pub seed: u64,
}

/// SplitMix64: small, fast and good enough for sample data.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Word `rank` of the synthetic vocabulary: distinct lowercase strings, shorter for
/// frequent ranks.
pub fn word(rank: usize) -> String {
    let mut n = rank + 1;
    let mut w = String::new();
    while n > 0 {
        n -= 1;
        w.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    w
}

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s`.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut SplitMix64) -> usize {
        let total = *self.cumulative.last().expect("at least one rank");
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative.partition_point(|&c| c <= u).min(self.cumulative.len() - 1)
    }
}

/// Writes `spec.files` files `part-NNNN.txt` into `dir`, in parallel.
pub fn write_text(dir: &Path, spec: &TextSpec) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let words: Vec<String> = (0..spec.vocabulary).map(word).collect();
    let zipf = Zipf::new(spec.vocabulary, spec.exponent);
    let files = spec.files.max(1);
    let per_file = spec.bytes / files as u64;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..files)
            .map(|i| {
                let (words, zipf) = (&words, &zipf);
                let path = dir.join(format!("part-{i:04}.txt"));
                let seed = spec.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                scope.spawn(move || write_file(&path, per_file, words, zipf, seed))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|_| Err(std::io::Error::other("panicked"))))
    })
}

fn write_file(path: &Path, bytes: u64, words: &[String], zipf: &Zipf, seed: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = SplitMix64::new(seed);
    let mut written = 0u64;
    let mut line = String::new();
    while written < bytes {
        line.clear();
        let n = 4 + rng.below(14);
        for k in 0..n {
            if k > 0 {
                line.push(' ');
            }
            line.push_str(&words[zipf.sample(&mut rng)]);
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_distinct_and_zipf_favours_low_ranks() {
        let words: std::collections::HashSet<_> = (0..5000).map(word).collect();
        assert_eq!(words.len(), 5000);
        let zipf = Zipf::new(1000, 1.0);
        let mut rng = SplitMix64::new(1);
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[zipf.sample(&mut rng)] += 1;
        }
        assert!(hits[0] > hits[1] && hits[1] > hits[10] && hits[10] > hits[500]);
    }
}
