//! Benchmarks of kube-ipvs; see `benches/`.
