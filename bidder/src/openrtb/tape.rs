//! Reading simd-json's tape: object fields, array items and typed scalars.
//!
//! The tape is a flat `Vec<Node>` in document order; a container node records how many
//! nodes follow inside it, so skipping an unwanted value is one addition. Everything
//! here reads with `get` and returns `None` on a mismatch, so a malformed or
//! unexpected document can never index out of bounds.
//!
//! Type rule (one rule for every optional field): a value of the wrong JSON type, an
//! integer out of range, or an empty string is treated as absent. The one exception is
//! a floor (`bidfloor`): one of the wrong type refuses the request (`extract.rs`).

use simd_json::{Node, StaticNode};

/// Index one past the value starting at `i` (containers span their children).
pub(crate) fn value_end(nodes: &[Node<'_>], i: usize) -> usize {
    match nodes.get(i) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => i + 1 + count,
        _ => i + 1,
    }
}

/// Iterator over `(key, value index)` of the object starting at node `i`.
pub(crate) struct Fields<'t, 'a> {
    nodes: &'t [Node<'a>],
    next: usize,
    left: usize,
}

/// The fields of the object at `i`, or `None` when `i` is not an object.
pub(crate) fn object<'t, 'a>(nodes: &'t [Node<'a>], i: usize) -> Option<Fields<'t, 'a>> {
    match nodes.get(i) {
        Some(Node::Object { len, .. }) => Some(Fields {
            nodes,
            next: i + 1,
            left: *len,
        }),
        _ => None,
    }
}

impl<'a> Iterator for Fields<'_, 'a> {
    type Item = (&'a str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let Some(Node::String(key)) = self.nodes.get(self.next) else {
            self.left = 0;
            return None;
        };
        let value = self.next + 1;
        self.next = value_end(self.nodes, value);
        self.left -= 1;
        Some((key, value))
    }
}

/// Iterator over the value indexes of the array starting at node `i`.
pub(crate) struct Items<'t, 'a> {
    nodes: &'t [Node<'a>],
    next: usize,
    left: usize,
}

/// The items of the array at `i` and their count, or `None` when `i` is not an array.
pub(crate) fn array<'t, 'a>(nodes: &'t [Node<'a>], i: usize) -> Option<Items<'t, 'a>> {
    match nodes.get(i) {
        Some(Node::Array { len, .. }) => Some(Items {
            nodes,
            next: i + 1,
            left: *len,
        }),
        _ => None,
    }
}

impl Items<'_, '_> {
    /// Number of items the array holds on the wire.
    pub(crate) fn wire_len(&self) -> usize {
        self.left
    }
}

impl Iterator for Items<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 || self.next >= self.nodes.len() {
            return None;
        }
        let item = self.next;
        self.next = value_end(self.nodes, item);
        self.left -= 1;
        Some(item)
    }
}

/// A non-empty string.
pub(crate) fn str_at<'a>(nodes: &[Node<'a>], i: usize) -> Option<&'a str> {
    match nodes.get(i) {
        Some(Node::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Any JSON number, as `f64`.
pub(crate) fn f64_at(nodes: &[Node<'_>], i: usize) -> Option<f64> {
    match nodes.get(i)? {
        Node::Static(StaticNode::I64(v)) => Some(*v as f64),
        Node::Static(StaticNode::U64(v)) => Some(*v as f64),
        Node::Static(StaticNode::F64(v)) => Some(*v),
        _ => None,
    }
}

/// An integer (or a float with an integral value, which some exchanges send), as `i64`.
pub(crate) fn i64_at(nodes: &[Node<'_>], i: usize) -> Option<i64> {
    match nodes.get(i)? {
        Node::Static(StaticNode::I64(v)) => Some(*v),
        Node::Static(StaticNode::U64(v)) => i64::try_from(*v).ok(),
        Node::Static(StaticNode::F64(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => Some(*v as i64),
        _ => None,
    }
}

/// A non-negative integer that fits `u32`.
pub(crate) fn u32_at(nodes: &[Node<'_>], i: usize) -> Option<u32> {
    u32::try_from(i64_at(nodes, i)?).ok()
}

/// An integer that fits `i32`.
pub(crate) fn i32_at(nodes: &[Node<'_>], i: usize) -> Option<i32> {
    i32::try_from(i64_at(nodes, i)?).ok()
}

/// A 0/1 flag. Any non-zero number means set, which fails closed for privacy flags
/// (`gdpr: 2` is treated as "applies"); JSON booleans are accepted too.
pub(crate) fn flag_at(nodes: &[Node<'_>], i: usize) -> Option<bool> {
    match nodes.get(i)? {
        Node::Static(StaticNode::Bool(b)) => Some(*b),
        _ => f64_at(nodes, i).map(|v| v != 0.0),
    }
}
