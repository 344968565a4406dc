//! What [`dense::pack`] saves, counted by the allocator: a map filled one
//! ascending key at a time, as a listing fills the snapshot, holds its
//! entries in nodes about half full; packed, the same entries take at
//! most two thirds of the memory. And the sizes of the records held a
//! hundred thousand times.

// A counting global allocator is the one way to weigh the nodes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use kube_ipvs_controller::dense;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::SeqCst);
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
        // SAFETY: the caller's contract is System's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn a_map_filled_in_key_order_packs_into_two_thirds_of_its_memory() {
    // Entries as large as the snapshot's (a key and a Service's info).
    let start = LIVE.load(Ordering::SeqCst);
    let mut map = BTreeMap::new();
    for k in 0..10_000u64 {
        map.insert(k, [k; 32]);
    }
    let filled = LIVE.load(Ordering::SeqCst) - start;
    dense::pack(&mut map);
    let packed = LIVE.load(Ordering::SeqCst) - start;
    assert_eq!(map.len(), 10_000);
    assert!(map
        .iter()
        .enumerate()
        .all(|(i, (k, v))| *k == i as u64 && v[31] == *k));
    assert!(
        packed * 3 <= filled * 2,
        "filled one key at a time: {filled} bytes; packed: {packed} bytes"
    );
}

/// A hundred thousand endpoints and twice as many real servers are held at
/// 10,000 Services x 10: what each record weighs is kept from growing back
/// (hints behind one pointer; a forward method in a byte).
#[test]
fn an_endpoint_and_a_real_server_stay_small() {
    use std::mem::size_of;
    assert_eq!(size_of::<kube_ipvs_controller::EndpointInfo>(), 48);
    assert_eq!(size_of::<kube_ipvs_model::RealServer>(), 36);
    assert_eq!(size_of::<kube_ipvs_controller::ObservedRealServer>(), 44);
}
