//! The reference reader: simd-json's tape of the whole document, walked forward.
//!
//! The tape is a flat `Vec<Node>` in document order; a container node records how many
//! nodes follow inside it, so skipping an unwanted value is one addition. simd-json has
//! already checked the document, so the only faults left here would be bugs in the
//! walk; they are refused as invalid JSON rather than trusted (every read is a `get`).

use simd_json::{Node, StaticNode};

use super::read::{JsonError, Kind, Reader, Scalar};
use super::MAX_DEPTH;

/// A forward-only walk over a finished tape.
pub(crate) struct TapeReader<'t, 'a> {
    nodes: &'t [Node<'a>],
    next: usize,
    depth: usize,
    /// Per open container: the fields or items not yet visited.
    left: [usize; MAX_DEPTH],
    /// Bit `d` set: the container at depth `d + 1` is an object.
    objects: u64,
}

impl<'t, 'a> TapeReader<'t, 'a> {
    pub(crate) fn new(nodes: &'t [Node<'a>]) -> Self {
        Self {
            nodes,
            next: 0,
            depth: 0,
            left: [0; MAX_DEPTH],
            objects: 0,
        }
    }

    #[cold]
    fn fail(&self, why: &'static str) -> JsonError {
        JsonError::Syntax { offset: 0, why }
    }

    fn node(&self) -> Result<&'t Node<'a>, JsonError> {
        self.nodes
            .get(self.next)
            .ok_or_else(|| self.fail("tape ended early"))
    }

    fn enter(&mut self, object: bool) -> Result<(), JsonError> {
        let len = match self.node()? {
            Node::Object { len, .. } if object => *len,
            Node::Array { len, .. } if !object => *len,
            _ => return Err(self.fail("tape walk out of step")),
        };
        if self.depth == MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.left[self.depth] = len;
        self.objects = (self.objects & !(1 << self.depth)) | (u64::from(object) << self.depth);
        self.depth += 1;
        self.next += 1;
        Ok(())
    }

    /// Counts one member of the innermost container; `false` (and steps out) when
    /// none is left.
    fn member(&mut self) -> bool {
        debug_assert!(self.depth > 0);
        let left = &mut self.left[self.depth - 1];
        if *left == 0 {
            self.depth -= 1;
            return false;
        }
        *left -= 1;
        true
    }
}

impl<'a> Reader<'a> for TapeReader<'_, 'a> {
    fn peek(&mut self) -> Result<Kind, JsonError> {
        Ok(match self.node()? {
            Node::Object { .. } => Kind::Object,
            Node::Array { .. } => Kind::Array,
            Node::String(_) => Kind::String,
            Node::Static(StaticNode::Bool(_)) => Kind::Bool,
            Node::Static(StaticNode::Null) => Kind::Null,
            Node::Static(_) => Kind::Number,
        })
    }

    fn scalar(&mut self) -> Result<Scalar<'a>, JsonError> {
        let value = match self.node()? {
            Node::String(s) => Scalar::Str(s),
            Node::Static(StaticNode::I64(v)) => Scalar::I64(*v),
            Node::Static(StaticNode::U64(v)) => Scalar::U64(*v),
            Node::Static(StaticNode::F64(v)) => Scalar::F64(*v),
            Node::Static(StaticNode::Bool(b)) => Scalar::Bool(*b),
            Node::Static(StaticNode::Null) => Scalar::Null,
            Node::Object { .. } | Node::Array { .. } => Scalar::Container,
        };
        self.skip()?;
        Ok(value)
    }

    fn skip(&mut self) -> Result<(), JsonError> {
        self.next += match self.node()? {
            Node::Object { count, .. } | Node::Array { count, .. } => 1 + count,
            _ => 1,
        };
        Ok(())
    }

    fn enter_object(&mut self) -> Result<(), JsonError> {
        self.enter(true)
    }

    fn enter_array(&mut self) -> Result<(), JsonError> {
        self.enter(false)
    }

    fn key(&mut self) -> Result<Option<&'a str>, JsonError> {
        debug_assert!(self.in_object());
        if !self.member() {
            return Ok(None);
        }
        let Node::String(key) = self.node()? else {
            return Err(self.fail("tape walk out of step"));
        };
        self.next += 1;
        Ok(Some(key))
    }

    fn item(&mut self) -> Result<bool, JsonError> {
        debug_assert!(!self.in_object());
        Ok(self.member())
    }

    fn depth(&self) -> usize {
        self.depth
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.objects & (1 << (self.depth - 1)) != 0
    }

    fn finish(&mut self) -> Result<(), JsonError> {
        debug_assert_eq!(self.depth, 0);
        if self.next != self.nodes.len() {
            return Err(self.fail("tape walk out of step"));
        }
        Ok(())
    }
}
