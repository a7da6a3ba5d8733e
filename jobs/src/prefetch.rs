//! A cache prefetch hint for hash tables that look up many keys at once: no architectural
//! effect, so it cannot change results.
#![allow(unsafe_code)]

/// Hints that `slots[index]` will be read soon (nothing when `index` is out of bounds).
#[inline]
pub(crate) fn slot<T>(slots: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(slot) = slots.get(index) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is a hint that never faults and has no effect but on the
        // cache; the pointer comes from a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((slot as *const T).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slots, index);
}
