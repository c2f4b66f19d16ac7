//! Reusing allocations across requests: the hot path's vectors hold borrowed data
//! whose lifetime ends with each request, but their buffers should live on.

/// Empties `v` and returns its allocation as a `Vec<B>`. `A` and `B` are the same type
/// up to lifetimes, so the standard library's in-place collection reuses the buffer
/// (the counting-allocator tests pin this); no `unsafe` is needed because no `A` is
/// ever turned into a `B`: the vector is empty before the conversion.
pub(crate) fn reuse_vec<A, B>(mut v: Vec<A>) -> Vec<B> {
    debug_assert_eq!(std::mem::size_of::<A>(), std::mem::size_of::<B>());
    debug_assert_eq!(std::mem::align_of::<A>(), std::mem::align_of::<B>());
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}
