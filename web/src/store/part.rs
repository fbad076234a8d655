//! `Part<T>`: one part of the page's state as a view receives it.
//!
//! A part is shared, never mutated in place while anyone else holds it: `edit` copies it first
//! (`Rc::make_mut`). So two parts are equal exactly when they are the same version — comparing
//! pointers is enough for Yew to skip a view whose part did not change, and no change can be
//! made without a view seeing it (there is no version number to forget to bump).

use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

pub struct Part<T>(Rc<T>);

impl<T: Clone> Part<T> {
    pub fn new(value: T) -> Part<T> {
        Part(Rc::new(value))
    }

    /// The part, to change: a copy if a view (or a checkpoint) still holds this version.
    pub fn edit(&mut self) -> &mut T {
        Rc::make_mut(&mut self.0)
    }
}

impl<T> Deref for Part<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> Clone for Part<T> {
    fn clone(&self) -> Self {
        Part(self.0.clone())
    }
}

/// The same version, not merely equal contents: cheap, and exact because versions are never
/// changed in place while shared.
impl<T> PartialEq for Part<T> {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

impl<T: Default> Default for Part<T> {
    fn default() -> Self {
        Part(Rc::new(T::default()))
    }
}

impl<T: fmt::Debug> fmt::Debug for Part<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_while_a_view_holds_the_part_makes_a_new_version() {
        let mut part = Part::new(vec![1]);
        let shown = part.clone();
        assert!(part == shown);
        part.edit().push(2);
        assert!(part != shown, "the view must see the change");
        assert_eq!(*shown, vec![1], "what the view holds is unchanged");
        assert_eq!(*part, vec![1, 2]);
    }

    #[test]
    fn a_part_nobody_else_holds_is_edited_in_place() {
        let mut part = Part::new(vec![1]);
        let before = Rc::as_ptr(&part.0);
        part.edit().push(2);
        assert_eq!(Rc::as_ptr(&part.0), before);
    }
}
