//! Handing the allocator's free pages back to the system.
//!
//! glibc's `malloc` returns memory to the system only from the top of its
//! heap. A full sync allocates and frees some ten megabytes of short-lived
//! objects (list pages, plan parts, dump replies) among the long-lived
//! state at 10,000 Services; the pages they freed below live objects stay
//! resident, and the agent's resident set stayed at its first sync's peak
//! for the rest of its life. `malloc_trim(0)` returns every whole free page
//! of every arena; the agent calls it when a full sync ends.

/// Returns the allocator's free pages to the system; whether any were.
/// Elsewhere than glibc (musl, whose allocator returns memory itself) it
/// does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and changes only glibc's own
    // free lists, under the arenas' locks, as malloc and free do.
    unsafe { nix::libc::malloc_trim(0) == 1 }
}

/// Returns the allocator's free pages to the system; whether any were.
/// Elsewhere than glibc (musl, whose allocator returns memory itself) it
/// does nothing.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}
