//! The owned XML element tree every stanza is carried in.
//!
//! An [`Element`] has a local name, a namespace URI (never a prefix: prefixes
//! are resolved by the parser and generated again by the serializer), its
//! attributes and its child nodes. Attribute names are plain strings: `name`
//! for the usual unqualified attribute, `xml:lang` (etc.) for the XML
//! namespace, `{uri}name` for any other namespace; the serializer declares a
//! prefix for the latter.
//!
//! Text nodes are kept merged: appending text right after text extends the
//! previous node and empty text is never stored, so a tree built through this
//! API equals the tree the parser produces from its serialization.

/// One XML element with its attributes and children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    name: String,
    ns: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Character data, unescaped.
    Text(String),
}

impl Element {
    /// Creates an empty element `name` in namespace `ns`.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: name.into(),
            ns: ns.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The local name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace URI (`""` for no namespace).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// The same element with every element in namespace `from` (itself and its
    /// descendants) moved to namespace `to`: a stanza read in one stream namespace
    /// (`jabber:component:accept`, `jabber:server`) carried in another (`jabber:client`).
    pub fn map_ns(mut self, from: &str, to: &str) -> Self {
        fn walk(el: &mut Element, from: &str, to: &str) {
            if el.ns == from {
                el.ns = to.to_owned();
            }
            for node in &mut el.children {
                if let Node::Element(child) = node {
                    walk(child, from, to);
                }
            }
        }
        walk(&mut self, from, to);
        self
    }

    /// Whether this element is `name` in namespace `ns`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// The value of attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets attribute `name`, replacing an existing value in place.
    pub fn set_attr(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.attrs.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name, value)),
        }
    }

    /// Removes attribute `name` and returns its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let index = self.attrs.iter().position(|(n, _)| n == name)?;
        Some(self.attrs.remove(index).1)
    }

    /// All attributes as `(name, value)`, in the order they were set (a
    /// parsed element has them sorted by namespace and name, as rxml
    /// reports them, not in document order).
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Builder form of [`set_attr`](Self::set_attr).
    pub fn with_attr(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`append_child`](Self::append_child).
    pub fn with_child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder form of [`append_text`](Self::append_text).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.append_text(text);
        self
    }

    /// Appends `child` and returns it for further building.
    pub fn append_child(&mut self, child: Element) -> &mut Element {
        self.children.push(Node::Element(child));
        match self.children.last_mut() {
            Some(Node::Element(child)) => child,
            _ => unreachable!("an element was pushed just above"),
        }
    }

    /// Appends character data, merging it into a directly preceding text node.
    pub fn append_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        match self.children.last_mut() {
            Some(Node::Text(previous)) => previous.push_str(&text),
            _ => self.children.push(Node::Text(text)),
        }
    }

    /// The element children, in order (text is skipped).
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element children, mutably.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Element> {
        self.children.iter_mut().filter_map(|node| match node {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// All child nodes, elements and text, in document order.
    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// The first child element `name` in namespace `ns`.
    pub fn get_child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    /// The first child element `name` in namespace `ns`, mutably.
    pub fn get_child_mut(&mut self, name: &str, ns: &str) -> Option<&mut Element> {
        self.children_mut().find(|e| e.is(name, ns))
    }

    /// Whether a child element `name` in namespace `ns` exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.get_child(name, ns).is_some()
    }

    /// Removes and returns the first child element `name` in namespace `ns`.
    pub fn remove_child(&mut self, name: &str, ns: &str) -> Option<Element> {
        let index = self
            .children
            .iter()
            .position(|node| matches!(node, Node::Element(e) if e.is(name, ns)))?;
        let removed = self.children.remove(index);
        self.merge_text_at(index);
        match removed {
            Node::Element(e) => Some(e),
            Node::Text(_) => unreachable!("position() matched an element"),
        }
    }

    /// Removes every child element for which `remove` returns true.
    pub fn remove_children(&mut self, mut remove: impl FnMut(&Element) -> bool) {
        let before = self.children.len();
        self.children.retain(|node| match node {
            Node::Element(e) => !remove(e),
            Node::Text(_) => true,
        });
        if self.children.len() != before {
            self.merge_all_text();
        }
    }

    /// Removes all children, elements and text.
    pub fn clear_children(&mut self) {
        self.children.clear();
    }

    /// The concatenation of the direct text children.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for node in &self.children {
            if let Node::Text(t) = node {
                text.push_str(t);
            }
        }
        text
    }

    /// The first child element, whatever its name.
    pub fn first_child(&self) -> Option<&Element> {
        self.children().next()
    }

    /// Appends an attribute the parser has already checked to be unique.
    pub(crate) fn push_attr_unchecked(&mut self, name: String, value: String) {
        self.attrs.push((name, value));
    }

    /// Attributes as stored, for the serializer.
    pub(crate) fn raw_attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// After removing the node at `index`, joins the text nodes it separated.
    fn merge_text_at(&mut self, index: usize) {
        let split = index.min(self.children.len());
        let (before, after) = self.children.split_at_mut(split);
        if let (Some(Node::Text(previous)), Some(Node::Text(next))) =
            (before.last_mut(), after.first())
        {
            previous.push_str(next);
            self.children.remove(index);
        }
    }

    fn merge_all_text(&mut self) {
        let mut index = 1;
        while index < self.children.len() {
            let before = self.children.len();
            self.merge_text_at(index);
            if self.children.len() == before {
                index += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "jabber:client";
    const DISCO: &str = "http://jabber.org/protocol/disco#info";

    fn message() -> Element {
        Element::new("message", CLIENT)
            .with_attr("to", "juliet@example.com")
            .with_attr("type", "chat")
            .with_child(Element::new("body", CLIENT).with_text("Wherefore"))
            .with_child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ))
    }

    #[test]
    fn attributes_are_set_replaced_and_removed() {
        let mut m = message();
        assert_eq!(m.attr("to"), Some("juliet@example.com"));
        m.set_attr("to", "romeo@example.net");
        assert_eq!(m.attr("to"), Some("romeo@example.net"));
        assert_eq!(
            m.attrs().collect::<Vec<_>>(),
            vec![("to", "romeo@example.net"), ("type", "chat")]
        );
        assert_eq!(m.remove_attr("type"), Some("chat".to_owned()));
        assert_eq!(m.remove_attr("type"), None);
        assert_eq!(m.attr("type"), None);
    }

    #[test]
    fn children_are_found_by_name_and_namespace() {
        let mut m = message();
        assert!(m.is("message", CLIENT));
        assert!(m.has_child("body", CLIENT));
        assert!(!m.has_child("body", DISCO));
        assert_eq!(
            m.get_child("body", CLIENT).map(Element::text),
            Some("Wherefore".into())
        );
        assert_eq!(m.first_child().map(Element::name), Some("body"));
        if let Some(body) = m.get_child_mut("body", CLIENT) {
            body.append_text(" art thou");
        }
        assert_eq!(
            m.get_child("body", CLIENT).map(Element::text),
            Some("Wherefore art thou".into())
        );
        assert_eq!(m.children().count(), 2);
    }

    #[test]
    fn append_child_returns_the_new_child() {
        let mut iq = Element::new("iq", CLIENT);
        let query = iq.append_child(Element::new("query", DISCO));
        query.append_child(Element::new("identity", DISCO).with_attr("category", "server"));
        assert_eq!(
            iq.get_child("query", DISCO)
                .and_then(|q| q.get_child("identity", DISCO))
                .and_then(|i| i.attr("category")),
            Some("server")
        );
    }

    #[test]
    fn adjacent_text_is_merged_and_empty_text_dropped() {
        let e = Element::new("body", CLIENT)
            .with_text("a")
            .with_text("")
            .with_text("b");
        assert_eq!(e.nodes(), &[Node::Text("ab".into())]);
        assert_eq!(Element::new("x", "").with_text("").nodes(), &[]);
    }

    #[test]
    fn removing_a_child_merges_the_text_around_it() {
        let mut e = Element::new("p", "")
            .with_text("a")
            .with_child(Element::new("b", ""))
            .with_text("c")
            .with_child(Element::new("d", ""))
            .with_text("e");
        let removed = e.remove_child("b", "");
        assert_eq!(removed.map(|b| b.name().to_owned()), Some("b".into()));
        assert_eq!(e.nodes()[0], Node::Text("ac".into()));
        e.remove_children(|child| child.name() == "d");
        assert_eq!(e.nodes(), &[Node::Text("ace".into())]);
        assert_eq!(e.text(), "ace");
        e.clear_children();
        assert!(e.nodes().is_empty());
    }

    #[test]
    fn remove_children_keeps_the_others_in_order() {
        let mut e = Element::new("p", "")
            .with_child(Element::new("a", ""))
            .with_child(Element::new("b", ""))
            .with_child(Element::new("c", ""));
        e.remove_children(|child| child.name() == "b");
        assert_eq!(
            e.children().map(Element::name).collect::<Vec<_>>(),
            vec!["a", "c"]
        );
        for child in e.children_mut() {
            child.set_attr("seen", "1");
        }
        assert!(e.children().all(|c| c.attr("seen") == Some("1")));
    }
}
