//! What the lab benches (ignored tests that `bench/*.sh` run) share: the number of rounds and
//! the median of their figures. No timing is asserted anywhere.

/// `DROVER_BENCH_ROUNDS`, or `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("DROVER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `values` (the mean of the middle two for an even count); 0 for none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => 0.0,
        n if n % 2 == 0 => (values[mid - 1] + values[mid]) / 2.0,
        _ => values[mid],
    }
}
