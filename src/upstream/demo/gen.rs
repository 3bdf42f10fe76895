//! The demo generator's stateless building blocks: a keyed hash, a keyed permutation of the
//! key space, and the time grid mapping transaction numbers to commit timestamps.
//!
//! Nothing here holds state: every value is a pure function of its arguments, so any part of
//! any table's history can be computed on its own.

/// The splitmix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of several words (order matters).
#[inline]
pub(crate) fn hash(parts: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &p in parts {
        h = mix(h ^ p);
    }
    h
}

/// Domain-separation tags for [`hash`].
pub(crate) mod tag {
    /// A table's phase on the time grid.
    pub const PHASE: u64 = 1;
    /// A round's permutation key.
    pub const PERM: u64 = 2;
    /// The "delete" coin of a (key, round).
    pub const DELETE: u64 = 3;
    /// A row image's values.
    pub const IMAGE: u64 = 4;
    /// A transaction's start-ts offset.
    pub const START: u64 = 5;
}

/// Feistel rounds of [`Perm`].
const FEISTEL_ROUNDS: u64 = 4;

/// A keyed permutation of `0..n` (a balanced Feistel network on the smallest even-bit power of
/// two ≥ `n`, with cycle walking). Forward and inverse cost O(1) hashes (expected < 4 walks).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Perm {
    n: u64,
    half_bits: u32,
    key: u64,
}

impl Perm {
    /// The permutation of `0..n` for `key`; `n ≥ 1`.
    pub(crate) fn new(n: u64, key: u64) -> Self {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        Perm {
            n,
            half_bits: bits.div_ceil(2).max(1),
            key,
        }
    }

    #[inline]
    fn round_fn(&self, round: u64, x: u64) -> u64 {
        mix(self.key ^ mix(x ^ round.wrapping_mul(0xA24B_AED4_963E_E407)))
            & ((1u64 << self.half_bits) - 1)
    }

    #[inline]
    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for round in 0..FEISTEL_ROUNDS {
            (l, r) = (r, l ^ self.round_fn(round, r));
        }
        (l << self.half_bits) | r
    }

    #[inline]
    fn decrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut l, mut r) = (x >> self.half_bits, x & mask);
        for round in (0..FEISTEL_ROUNDS).rev() {
            (l, r) = (r ^ self.round_fn(round, l), l);
        }
        (l << self.half_bits) | r
    }

    /// The image of `x < n`.
    #[inline]
    pub(crate) fn apply(&self, x: u64) -> u64 {
        if self.n <= 1 {
            return 0;
        }
        let mut y = self.encrypt(x);
        while y >= self.n {
            y = self.encrypt(y);
        }
        y
    }

    /// The preimage of `y < n`.
    #[inline]
    pub(crate) fn invert(&self, y: u64) -> u64 {
        if self.n <= 1 {
            return 0;
        }
        let mut x = self.decrypt(y);
        while x >= self.n {
            x = self.decrypt(x);
        }
        x
    }
}

/// TSO units per second (`1000 ms << 18`).
pub(crate) const TSO_PER_SEC: u128 = 1000 << 18;

/// Transaction `j` of a table commits at `base + floor(j · num / den)` (TSO units), with
/// `num = key_space · TSO_PER_SEC` and `den = rows_per_second · txns_per_round`: a round of
/// `txns_per_round` transactions writes `key_space` rows, so rows arrive at exactly
/// `rows_per_second` on average; commit ts strictly increase (`num ≥ den` as
/// `txns_per_round ≤ key_space` and `rows_per_second < TSO_PER_SEC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    num: u128,
    den: u128,
}

impl Grid {
    /// The grid for `rows_per_second` (0 = no transactions) over rounds of `txns_per_round`
    /// transactions writing `key_space` rows.
    pub(crate) fn new(rows_per_second: u64, key_space: u64, txns_per_round: u64) -> Self {
        Grid {
            num: u128::from(key_space) * TSO_PER_SEC,
            den: u128::from(rows_per_second) * u128::from(txns_per_round),
        }
    }

    /// The smallest gap between two transactions, in TSO units (≥ 1).
    pub(crate) fn min_step(&self) -> u64 {
        if self.den == 0 {
            return 1;
        }
        u64::try_from(self.num / self.den)
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Offset of transaction `j` from the table's base.
    #[inline]
    pub(crate) fn offset(&self, j: u64) -> u64 {
        if self.den == 0 {
            return u64::MAX;
        }
        u64::try_from(u128::from(j) * self.num / self.den).unwrap_or(u64::MAX)
    }

    /// The first transaction with offset `> x` (offsets relative to the base).
    pub(crate) fn first_after(&self, x: u64) -> u64 {
        // floor(j·num/den) ≥ x+1  ⟺  j ≥ ceil((x+1)·den/num)
        let m = u128::from(x) + 1;
        u64::try_from((m * self.den).div_ceil(self.num)).unwrap_or(u64::MAX)
    }

    /// The last transaction with offset `≤ y`, if any (relative to the base).
    pub(crate) fn last_upto(&self, y: u64) -> Option<u64> {
        if self.den == 0 {
            return None;
        }
        // floor(j·num/den) ≤ y  ⟺  j·num < (y+1)·den  ⟺  j ≤ ceil((y+1)·den/num) − 1
        let m = u128::from(y) + 1;
        let c = (m * self.den).div_ceil(self.num);
        c.checked_sub(1).and_then(|j| u64::try_from(j).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_is_a_bijection_with_its_inverse() {
        for n in [1u64, 2, 3, 7, 16, 17, 100, 1000, 4097] {
            for key in [0u64, 1, 0xdead_beef] {
                let p = Perm::new(n, key);
                let mut seen = vec![false; n as usize];
                for x in 0..n {
                    let y = p.apply(x);
                    assert!(y < n, "n={n} x={x} y={y}");
                    assert!(!seen[y as usize], "n={n}: {y} twice");
                    seen[y as usize] = true;
                    assert_eq!(p.invert(y), x, "n={n} key={key}");
                }
            }
        }
    }

    #[test]
    fn grid_search_matches_offsets() {
        for (rps, keys, txns) in [
            (1u64, 1u64, 1u64),
            (3, 5, 5),
            (1000, 1000, 250),
            (1_000_000, 3, 3),
            (999, 64, 22),
        ] {
            let g = Grid::new(rps, keys, txns);
            for j in 0..2_000u64 {
                let o = g.offset(j);
                assert!(g.offset(j + 1) > o, "strictly increasing");
                assert_eq!(g.last_upto(o), Some(j));
                assert_eq!(g.first_after(o), j + 1);
                if o > 0 {
                    assert_eq!(g.first_after(o - 1), j);
                }
            }
        }
        assert_eq!(Grid::new(0, 1, 1).last_upto(1 << 40), None);
    }
}
