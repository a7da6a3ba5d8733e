//! Jain's fairness index: `(Σx)² / (n·Σx²)` over allocations normalized by what each party
//! is entitled to; 1 is perfectly fair, 1/n is one party taking everything.

/// Jain's index of the allocations `x`.
pub fn jain(x: &[f64]) -> f64 {
    let (sum, squares) = x.iter().fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
    if x.is_empty() || squares == 0.0 { 1.0 } else { sum * sum / (x.len() as f64 * squares) }
}

/// Jain's index of (running, fair share) pairs, over the parties entitled to something.
pub fn jain_against_shares(parties: &[(f64, f64)]) -> f64 {
    let x: Vec<f64> =
        parties.iter().filter(|(_, share)| *share >= 1.0).map(|(run, share)| run / share).collect();
    jain(&x)
}

/// Jain's index of (running, demand) pairs against an equal split of `slots` capped by
/// each party's demand (water-filling).
pub fn jain_equal_split(parties: &[(f64, f64)], slots: f64) -> f64 {
    let mut order: Vec<usize> = (0..parties.len()).collect();
    order.sort_by(|a, b| parties[*a].1.total_cmp(&parties[*b].1));
    let mut shares = vec![0.0; parties.len()];
    let mut left = slots;
    for (served, &i) in order.iter().enumerate() {
        let even = left / (parties.len() - served) as f64;
        shares[i] = parties[i].1.min(even);
        left -= shares[i];
    }
    let pairs: Vec<(f64, f64)> =
        parties.iter().zip(&shares).map(|((run, _), share)| (*run, *share)).collect();
    jain_against_shares(&pairs)
}

pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 }
}

pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min).min(1.0)
}
