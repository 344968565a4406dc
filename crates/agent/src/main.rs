//! The `kube-ipvs` binary.

fn main() {}
