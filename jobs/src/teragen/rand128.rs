//! The sort benchmark's 128-bit linear congruential generator (`rand16.c` of gensort,
//! `Random16` of Hadoop's TeraGen):
//!
//! ```text
//! x(n+1) = (MULTIPLIER * x(n) + INCREMENT) mod 2^128,   x(0) = 0
//! ```
//!
//! Its skip-ahead computes `x(n)` directly for any `n` by composing the precomputed powers
//! `f^(2^k)` of the step function `f` ([`JUMPS`]), one per set bit of `n`. Record number `N`
//! of the benchmark data takes its random value from `x(N + 1)`: the generator is skipped to
//! `x(N)` and stepped once ([`Lcg128::at`]).

/// The multiplier `a` (from L'Ecuyer's table of LCGs with good lattice structure).
pub const MULTIPLIER: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;

/// The increment `c`: odd, and in ASCII `"JimGrayRIP      \x01"`.
pub const INCREMENT: u128 = 0x4a69_6d47_7261_7952_4950_2020_2020_2001;

/// An affine map `x -> mul * x + add (mod 2^128)`: a power of the generator's step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine {
    /// The multiplier.
    pub mul: u128,
    /// The addend.
    pub add: u128,
}

impl Affine {
    /// One step of the generator.
    pub const STEP: Affine = Affine { mul: MULTIPLIER, add: INCREMENT };

    /// `self(x)`.
    #[inline]
    pub const fn apply(self, x: u128) -> u128 {
        self.mul.wrapping_mul(x).wrapping_add(self.add)
    }

    /// The map `x -> next(self(x))`: `self` first, then `next`.
    pub const fn then(self, next: Affine) -> Affine {
        Affine { mul: next.mul.wrapping_mul(self.mul), add: next.apply(self.add) }
    }
}

/// `JUMPS[k]` is the step applied `2^k` times: `f^(2^k)` (the `Gen` table of `rand16.c`).
pub const JUMPS: [Affine; 128] = jump_table();

const fn jump_table() -> [Affine; 128] {
    let mut table = [Affine::STEP; 128];
    let mut k = 1;
    while k < 128 {
        table[k] = table[k - 1].then(table[k - 1]);
        k += 1;
    }
    table
}

/// `x(n)`: the generator's value after `n` steps from the seed 0, in at most 128 affine
/// compositions. Powers of one map commute, so the set bits may be applied in any order.
pub fn skip_ahead(n: u128) -> u128 {
    let mut x = 0u128;
    let mut bits = n;
    while bits != 0 {
        let k = bits.trailing_zeros() as usize;
        x = JUMPS[k].apply(x);
        bits &= bits - 1;
    }
    x
}

/// The generator, positioned anywhere in its sequence.
#[derive(Clone, Debug)]
pub struct Lcg128 {
    state: u128,
}

impl Lcg128 {
    /// The generator at `x(n)`: its next value is `x(n + 1)`, the random value of record
    /// number `n`.
    pub fn at(n: u128) -> Self {
        Lcg128 { state: skip_ahead(n) }
    }

    /// Steps once and returns the new value.
    #[inline]
    pub fn next_value(&mut self) -> u128 {
        self.state = Affine::STEP.apply(self.state);
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries of the `Gen` table published in gensort's `rand16.c` (and Hadoop's
    /// `Random16.java`): computed there independently of our composition.
    #[test]
    fn jump_table_matches_the_published_gen_table() {
        let published: [(usize, u128, u128); 8] = [
            (0, 0x2360ed051fc65da44385df649fccf645, 0x4a696d47726179524950202020202001),
            (1, 0x17bce35bdf69743c529ed9eb20e0ae99, 0x95e0e48262b3edfe04479485c755b646),
            (2, 0xf4dd417327db7a9bd194dfbe42d45771, 0x882a02c315362b60765f100068b33a1c),
            (3, 0x6347af777a7898f6d1a2d6f33505ffe1, 0x5efc4abfaca23e8ca8edb1f2dfbf6478),
            (10, 0xae4f079d54fbece1478331d3c6bef001, 0x991965329dccb28d581199ab18c5fc00),
            (32, 0x433bef4314f16a9453cd8fbc00000001, 0x158c62f2b31e496dfd71a97f00000000),
            (64, 0x5f0ba18c53cd8fbc0000000000000001, 0xf0b1944bfd71a97f0000000000000000),
            (127, 0x00000000000000000000000000000001, 0x80000000000000000000000000000000),
        ];
        for (k, mul, add) in published {
            assert_eq!(JUMPS[k], Affine { mul, add }, "JUMPS[{k}]");
        }
    }

    #[test]
    fn skip_ahead_equals_stepping_one_by_one() {
        let mut x = 0u128;
        for n in 0..5000u128 {
            assert_eq!(skip_ahead(n), x, "x({n})");
            x = Affine::STEP.apply(x);
        }
        let mut lcg = Lcg128::at(123_456_789);
        let mut x = skip_ahead(123_456_789);
        for _ in 0..1000 {
            x = Affine::STEP.apply(x);
            assert_eq!(lcg.next_value(), x);
        }
    }

    #[test]
    fn skip_ahead_composes_and_wraps_at_the_period() {
        // x(m + n) = f^n(x(m)) with f^n built from the jump table.
        let (m, n) = (0xdead_beef_u128 << 70 | 12345, 987_654_321_012_345_u128);
        let mut jump = Affine { mul: 1, add: 0 };
        for (k, power) in JUMPS.iter().enumerate() {
            if n >> k & 1 == 1 {
                jump = jump.then(*power);
            }
        }
        assert_eq!(skip_ahead(m + n), jump.apply(skip_ahead(m)));
        // The period is 2^128 (c odd, a = 1 mod 4): f^(2^127) twice is the identity, and
        // x(2^128 - 1) steps to x(0) = 0.
        assert_eq!(JUMPS[127].then(JUMPS[127]), Affine { mul: 1, add: 0 });
        assert_eq!(Affine::STEP.apply(skip_ahead(u128::MAX)), 0);
    }

    #[test]
    fn the_first_value_is_the_increment() {
        assert_eq!(Lcg128::at(0).next_value(), INCREMENT);
        assert_eq!(&INCREMENT.to_be_bytes()[..10], b"JimGrayRIP");
    }
}
