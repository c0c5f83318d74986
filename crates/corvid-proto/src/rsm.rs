//! XEP-0059 result set management: the `<set/>` a requester pages with, and the one a
//! result describes its page with. Shared by pubsub item retrieval and, later, MAM.

use corvid_xml::Element;

use crate::ns;

/// A requested page (XEP-0059 §2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub max: Option<usize>,
    /// `<after>id</after>`: the page after this item.
    pub after: Option<String>,
    /// `<before>id</before>`: the page before it; `Some("")` is `<before/>`, the last page.
    pub before: Option<String>,
    /// `<index/>` (§2.4): not supported by keyset paging.
    pub index: Option<usize>,
}

/// A `<set/>` that cannot be read.
#[derive(Debug, PartialEq, Eq)]
pub struct BadSet;

impl PageRequest {
    /// Reads a request's `<set xmlns='http://jabber.org/protocol/rsm'/>`.
    pub fn parse(set: &Element) -> Result<Self, BadSet> {
        let mut page = PageRequest::default();
        for child in set.children().filter(|c| c.ns() == ns::RSM) {
            match child.name() {
                "max" => page.max = Some(child.text().trim().parse().map_err(|_| BadSet)?),
                "after" => {
                    let id = child.text();
                    if id.is_empty() {
                        return Err(BadSet);
                    }
                    page.after = Some(id);
                }
                "before" => page.before = Some(child.text()),
                "index" => page.index = Some(child.text().trim().parse().map_err(|_| BadSet)?),
                _ => {}
            }
        }
        if page.after.is_some() && page.before.is_some() {
            return Err(BadSet);
        }
        Ok(page)
    }
}

/// The `<set/>` of a result page (XEP-0059 §2.1): first and last ids of the page, the
/// index of the first in the whole set, and the set's size.
pub fn result_set(first: Option<(&str, usize)>, last: Option<&str>, count: usize) -> Element {
    let mut set = Element::new("set", ns::RSM);
    if let (Some((first, index)), Some(last)) = (first, last) {
        set.append_child(
            Element::new("first", ns::RSM)
                .with_attr("index", index.to_string())
                .with_text(first),
        );
        set.append_child(Element::new("last", ns::RSM).with_text(last));
    }
    set.append_child(Element::new("count", ns::RSM).with_text(count.to_string()));
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(children: &[(&str, &str)]) -> Element {
        let mut set = Element::new("set", ns::RSM);
        for (name, text) in children {
            set.append_child(Element::new(*name, ns::RSM).with_text(*text));
        }
        set
    }

    #[test]
    fn reads_max_after_and_empty_before() {
        let page = PageRequest::parse(&set(&[("max", "10"), ("after", "x")])).unwrap();
        assert_eq!((page.max, page.after.as_deref()), (Some(10), Some("x")));
        let page = PageRequest::parse(&set(&[("max", "5"), ("before", "")])).unwrap();
        assert_eq!(page.before.as_deref(), Some(""));
    }

    #[test]
    fn refuses_garbage() {
        assert_eq!(PageRequest::parse(&set(&[("max", "-1")])), Err(BadSet));
        assert_eq!(PageRequest::parse(&set(&[("after", "")])), Err(BadSet));
        assert_eq!(
            PageRequest::parse(&set(&[("after", "a"), ("before", "b")])),
            Err(BadSet)
        );
    }

    #[test]
    fn an_empty_page_has_only_the_count() {
        let set = result_set(None, None, 7);
        assert!(set.get_child("first", ns::RSM).is_none());
        assert_eq!(set.get_child("count", ns::RSM).unwrap().text(), "7");
    }
}
