//! Benchmarks of the decision engine (filled in by the policy work; see docs/PERFORMANCE.md).
fn main() {}
