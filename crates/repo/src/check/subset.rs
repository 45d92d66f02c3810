//! Which packs a data check reads (`--read-data-subset`).

use crate::index::PackMeta;

/// Which packs a data check reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum DataSubset {
    /// Every pack.
    #[default]
    All,
    /// Part `n` of `m` (1 ≤ n ≤ m): the packs whose id, read as a number, is `n - 1` modulo
    /// `m`. Running parts 1 to m (say one a night) reads every pack exactly once, and a pack
    /// stays in its part as the repository grows.
    Part {
        /// Which part, from 1.
        n: u32,
        /// Of how many.
        m: u32,
    },
    /// A random selection of this share of the packs (0 < p ≤ 100), at least one pack.
    Percent(f64),
}

impl DataSubset {
    /// Parses `n/m` or `P%`.
    pub fn parse(text: &str) -> Result<DataSubset, String> {
        let bad = || format!("{text:?}: expected n/m (e.g. 2/7) or a percentage (e.g. 10%)");
        if let Some(p) = text.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|_| bad())?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "{text:?}: the percentage must be above 0 and at most 100"
                ));
            }
            return Ok(DataSubset::Percent(p));
        }
        let (n, m) = text.split_once('/').ok_or_else(bad)?;
        let (n, m): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            m.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || n > m {
            return Err(format!("{text:?}: n must be between 1 and m"));
        }
        Ok(DataSubset::Part { n, m })
    }

    /// Picks the packs to read.
    pub(crate) fn select(&self, mut packs: Vec<PackMeta>) -> Vec<PackMeta> {
        match *self {
            DataSubset::All => packs,
            DataSubset::Part { n, m } => packs
                .into_iter()
                .filter(|p| {
                    let head = u64::from_be_bytes([
                        p.id.0[0], p.id.0[1], p.id.0[2], p.id.0[3], p.id.0[4], p.id.0[5],
                        p.id.0[6], p.id.0[7],
                    ]);
                    // `parse` guarantees 1 ≤ n ≤ m; a hand-built value outside that selects
                    // nothing rather than dividing by zero.
                    m > 0 && head % u64::from(m) == u64::from(n.wrapping_sub(1))
                })
                .collect(),
            DataSubset::Percent(p) => {
                let want = ((packs.len() as f64 * p / 100.0).ceil() as usize)
                    .clamp(1, packs.len().max(1))
                    .min(packs.len());
                // A partial Fisher-Yates shuffle with fresh randomness.
                for i in 0..want {
                    let mut r = [0u8; 8];
                    let r = match getrandom::fill(&mut r) {
                        Ok(()) => u64::from_le_bytes(r),
                        Err(_) => i as u64,
                    };
                    let j = i + (r % (packs.len() - i) as u64) as usize;
                    packs.swap(i, j);
                }
                packs.truncate(want);
                packs
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use zaibei_format::{Id, PackKind};

    fn packs(n: u8) -> Vec<PackMeta> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(
                    &u64::from(i)
                        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                        .to_be_bytes(),
                );
                PackMeta {
                    id: Id(id),
                    kind: PackKind::Data,
                    salt: [0; 32],
                    size: 1,
                }
            })
            .collect()
    }

    #[test]
    fn parts_cover_every_pack_exactly_once() {
        let all = packs(200);
        let mut seen = Vec::new();
        for n in 1..=7 {
            let part = DataSubset::Part { n, m: 7 }.select(all.clone());
            assert!(
                !part.is_empty() && part.len() < 60,
                "part {n}: {}",
                part.len()
            );
            seen.extend(part.into_iter().map(|p| p.id));
        }
        seen.sort();
        let mut expected: Vec<Id> = all.iter().map(|p| p.id).collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn percentages_pick_that_share_at_least_one() {
        assert_eq!(DataSubset::Percent(10.0).select(packs(200)).len(), 20);
        assert_eq!(DataSubset::Percent(0.1).select(packs(5)).len(), 1);
        assert_eq!(DataSubset::Percent(100.0).select(packs(5)).len(), 5);
        assert!(DataSubset::Percent(50.0).select(Vec::new()).is_empty());
        let mut ids: Vec<Id> = DataSubset::Percent(50.0)
            .select(packs(10))
            .iter()
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 5, "no pack twice");
    }

    #[test]
    fn parsing() {
        assert_eq!(
            DataSubset::parse("2/7"),
            Ok(DataSubset::Part { n: 2, m: 7 })
        );
        assert_eq!(DataSubset::parse("12.5%"), Ok(DataSubset::Percent(12.5)));
        for bad in ["0/3", "4/3", "1/0", "0%", "101%", "x", "1/", "%"] {
            assert!(DataSubset::parse(bad).is_err(), "{bad}");
        }
    }
}
