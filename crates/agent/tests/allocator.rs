//! The allocator trim (`kube_ipvs::allocator`), in a process of its own:
//! the resident set it measures is not shared with other tests.

/// This process's resident set, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("resident pages");
    pages * 4096
}

/// Small blocks freed among ones kept stay resident until released: no
/// free page is at the top of the heap, so `free` alone returns (almost)
/// nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn pages_freed_among_live_blocks_go_back_to_the_system() {
    // 64 MiB of 1 KiB blocks, one in 64 kept.
    let blocks: Vec<Vec<u8>> = (0..65_536u32).map(|i| vec![i as u8; 1024]).collect();
    let kept: Vec<Vec<u8>> = blocks.into_iter().step_by(64).collect();
    let before = resident();
    assert!(
        kube_ipvs::allocator::release_free_memory(),
        "nothing was released"
    );
    let after = resident();
    assert!(
        before.saturating_sub(after) > 32 << 20,
        "resident {before} -> {after} bytes"
    );
    assert_eq!(kept.len(), 1024);
    assert!(kept.iter().enumerate().all(|(i, b)| b[0] == (i * 64) as u8));
}
