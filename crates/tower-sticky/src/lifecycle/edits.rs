//! Header edits as values: what the engine wants changed in the request it
//! forwards and in the response it returns.
//!
//! Front ends that own an `http::HeaderMap` apply them in one call
//! ([`HeaderEdits::apply`], or the `&mut HeaderMap` helpers on
//! [`Routed`](super::Routed)). Front ends that keep headers their own way
//! walk the edits and call their own methods: pingora's `RequestHeader` and
//! `ResponseHeader` keep a case map beside the `HeaderMap`, so editing
//! `.headers` directly would desynchronise them.
//!
//! ```
//! use http::{HeaderMap, HeaderValue, header::SET_COOKIE};
//! use tower_sticky::lifecycle::{EditOp, HeaderEdit};
//!
//! let edit = HeaderEdit::append(SET_COOKIE, HeaderValue::from_static("sticky=abc; Path=/"));
//! // An adapter with its own header type matches on the operation:
//! match edit.op() {
//!     EditOp::Insert => { /* header.insert_header(edit.name(), edit.value()) */ }
//!     EditOp::Append => { /* header.append_header(edit.name(), edit.value()) */ }
//!     EditOp::Remove => { /* header.remove_header(edit.name()) */ }
//!     _ => {}
//! }
//! let mut headers = HeaderMap::new();
//! edit.apply(&mut headers);
//! assert_eq!(headers[SET_COOKIE], "sticky=abc; Path=/");
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};

/// What a [`HeaderEdit`] does to its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EditOp {
    /// Replace every value of the header with this one.
    Insert,
    /// Add this value, keeping the others (`Set-Cookie`: never clobber the
    /// application's own).
    Append,
    /// Remove every value of the header.
    Remove,
}

/// One header edit: a name, an operation and (except for removals) a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderEdit {
    op: EditOp,
    name: HeaderName,
    value: Option<HeaderValue>,
}

impl HeaderEdit {
    /// Replace every value of `name` with `value`.
    pub fn insert(name: HeaderName, value: HeaderValue) -> Self {
        Self {
            op: EditOp::Insert,
            name,
            value: Some(value),
        }
    }

    /// Add `value` to `name`, keeping its other values.
    pub fn append(name: HeaderName, value: HeaderValue) -> Self {
        Self {
            op: EditOp::Append,
            name,
            value: Some(value),
        }
    }

    /// Remove every value of `name`.
    pub fn remove(name: HeaderName) -> Self {
        Self {
            op: EditOp::Remove,
            name,
            value: None,
        }
    }

    /// The operation.
    pub fn op(&self) -> EditOp {
        self.op
    }

    /// The header's name.
    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The value to insert or append; `None` for a removal.
    pub fn value(&self) -> Option<&HeaderValue> {
        self.value.as_ref()
    }

    /// The name and value, taken apart (for header APIs that take ownership).
    pub fn into_parts(self) -> (EditOp, HeaderName, Option<HeaderValue>) {
        (self.op, self.name, self.value)
    }

    /// Applies the edit to a `HeaderMap`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        match (self.op, &self.value) {
            (EditOp::Insert, Some(v)) => {
                headers.insert(self.name.clone(), v.clone());
            }
            (EditOp::Append, Some(v)) => {
                headers.append(self.name.clone(), v.clone());
            }
            _ => {
                headers.remove(&self.name);
            }
        }
    }
}

/// The edits of one request or one response, in the order to apply them.
///
/// The usual one or two edits are held inline, so computing them allocates
/// nothing beyond the values themselves (none at all for the hit path's
/// removal of our cookie).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    inline: [Option<HeaderEdit>; 2],
    more: Vec<HeaderEdit>,
}

impl HeaderEdits {
    /// No edits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an edit after the others.
    pub fn push(&mut self, edit: HeaderEdit) {
        match self.inline.iter_mut().find(|e| e.is_none()) {
            Some(slot) if self.more.is_empty() => *slot = Some(edit),
            _ => self.more.push(edit),
        }
    }

    /// Number of edits.
    pub fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.more.len()
    }

    /// Whether there is nothing to change.
    pub fn is_empty(&self) -> bool {
        self.inline[0].is_none()
    }

    /// The edits, in order.
    pub fn iter(&self) -> impl Iterator<Item = &HeaderEdit> {
        self.inline.iter().flatten().chain(self.more.iter())
    }

    /// Applies every edit to a `HeaderMap`, in order.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for e in self.iter() {
            e.apply(headers);
        }
    }
}

impl IntoIterator for HeaderEdits {
    type Item = HeaderEdit;
    type IntoIter = std::iter::Chain<
        std::iter::Flatten<std::array::IntoIter<Option<HeaderEdit>, 2>>,
        std::vec::IntoIter<HeaderEdit>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.inline.into_iter().flatten().chain(self.more)
    }
}

impl<'a> IntoIterator for &'a HeaderEdits {
    type Item = &'a HeaderEdit;
    type IntoIter = std::iter::Chain<
        std::iter::Flatten<std::slice::Iter<'a, Option<HeaderEdit>>>,
        std::slice::Iter<'a, HeaderEdit>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.inline.iter().flatten().chain(self.more.iter())
    }
}

impl Extend<HeaderEdit> for HeaderEdits {
    fn extend<I: IntoIterator<Item = HeaderEdit>>(&mut self, iter: I) {
        for e in iter {
            self.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};

    #[test]
    fn edits_keep_their_order_past_the_inline_ones() {
        let mut e = HeaderEdits::new();
        assert!(e.is_empty());
        e.push(HeaderEdit::remove(COOKIE));
        e.push(HeaderEdit::append(COOKIE, HeaderValue::from_static("a=1")));
        e.push(HeaderEdit::append(COOKIE, HeaderValue::from_static("b=2")));
        assert_eq!(e.len(), 3);
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("sticky=x"));
        e.apply(&mut h);
        let all: Vec<_> = h.get_all(COOKIE).iter().collect();
        assert_eq!(all, ["a=1", "b=2"]);
        let ops: Vec<_> = e.into_iter().map(|e| e.op()).collect();
        assert_eq!(ops, [EditOp::Remove, EditOp::Append, EditOp::Append]);
    }

    #[test]
    fn insert_replaces_append_keeps() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("app=1"));
        h.append(CACHE_CONTROL, HeaderValue::from_static("public"));
        HeaderEdit::append(SET_COOKIE, HeaderValue::from_static("sticky=2")).apply(&mut h);
        HeaderEdit::insert(CACHE_CONTROL, HeaderValue::from_static("private")).apply(&mut h);
        assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);
        assert_eq!(h[CACHE_CONTROL], "private");
    }
}
