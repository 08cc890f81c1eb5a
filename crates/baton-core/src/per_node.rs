//! One value per configured node.

use std::ops::{Deref, DerefMut};

/// One value per configured node, held inline for a single node: one
/// server's operations (the common case) then cost no allocation for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum PerNode<T> {
    One([T; 1]),
    Many(Vec<T>),
}

impl<T: Clone> PerNode<T> {
    /// `value` for each of `n` nodes.
    pub(crate) fn filled(n: usize, value: T) -> PerNode<T> {
        if n == 1 {
            PerNode::One([value])
        } else {
            PerNode::Many(vec![value; n])
        }
    }
}

impl<T> Deref for PerNode<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match self {
            PerNode::One(one) => one,
            PerNode::Many(many) => many,
        }
    }
}

impl<T> DerefMut for PerNode<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match self {
            PerNode::One(one) => one,
            PerNode::Many(many) => many,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_and_many_read_as_slices() {
        let mut one = PerNode::filled(1, 0u8);
        assert!(matches!(one, PerNode::One(_)));
        one[0] = 7;
        assert_eq!(&*one, &[7]);
        let many = PerNode::filled(3, 1u8);
        assert_eq!(&*many, &[1, 1, 1]);
    }
}
