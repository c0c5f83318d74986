//! Serialized XML cut back into its top-level elements, for carriers that send one element
//! per message (XMPP over WebSocket, RFC 7395; BOSH bodies): a stream's header, each
//! element standing alone, and the stream's end.
//!
//! It reads only XML this project serialized (or XML as plain): quotes in attributes are
//! respected, text never holds a raw `<`, and there are no comments or CDATA sections.

/// The stream namespace (`http://etherx.jabber.org/streams`).
const STREAM_NS: &str = "http://etherx.jabber.org/streams";

/// One piece of a cut stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// The stream header `<stream:stream …>`, as written.
    Header(Vec<u8>),
    /// One top-level element, as written (see [`standalone`]).
    Element(Vec<u8>),
    /// `</stream:stream>`.
    End,
}

/// Cuts a byte stream fed in pieces of any size.
#[derive(Default)]
pub struct Cutter {
    /// The element being cut (from its `<`), or the tag being read at the top level.
    buf: Vec<u8>,
    /// Elements open within the current one.
    depth: usize,
    /// Where the tag being read starts in `buf`, while inside one.
    tag: Option<usize>,
    /// The quote an attribute value is open with.
    quote: Option<u8>,
}

impl Cutter {
    /// Feeds bytes; each piece they complete goes to `out`. Text between top-level elements
    /// (whitespace keepalives) and XML declarations are dropped.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(Cut)) {
        for &byte in data {
            match self.tag {
                None if byte == b'<' => {
                    self.tag = Some(self.buf.len());
                    self.buf.push(byte);
                }
                None => {
                    if self.depth > 0 {
                        self.buf.push(byte);
                    }
                }
                Some(start) => {
                    self.buf.push(byte);
                    match (self.quote, byte) {
                        (Some(q), b) if b == q => self.quote = None,
                        (Some(_), _) => {}
                        (None, b'"' | b'\'') => self.quote = Some(byte),
                        (None, b'>') => {
                            self.tag = None;
                            self.end_of_tag(start, out);
                        }
                        (None, _) => {}
                    }
                }
            }
        }
    }

    /// Whether nothing is held (between elements).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
    }

    fn end_of_tag(&mut self, start: usize, out: &mut impl FnMut(Cut)) {
        let tag = &self.buf[start..];
        if tag.starts_with(b"<?") {
            self.buf.truncate(start);
            return;
        }
        if tag.starts_with(b"</") {
            if self.depth == 0 {
                // Only the stream's own end closes at the top level.
                self.buf.clear();
                out(Cut::End);
                return;
            }
            self.depth -= 1;
        } else if tag.starts_with(b"<stream:stream") && self.depth == 0 {
            out(Cut::Header(std::mem::take(&mut self.buf)));
            return;
        } else if !tag.ends_with(b"/>") {
            self.depth += 1;
        }
        if self.depth == 0 {
            out(Cut::Element(std::mem::take(&mut self.buf)));
        }
    }
}

/// An element written inside a stream, made to stand alone: the `stream:` prefix declared
/// on `<stream:…>` elements, and `default_ns` on others whose start tag declares no
/// default namespace (they relied on the stream's).
pub fn standalone(element: Vec<u8>, default_ns: &str) -> Vec<u8> {
    let name_end = element
        .iter()
        .position(|b| matches!(b, b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(element.len());
    let start_tag_end = element
        .iter()
        .position(|&b| b == b'>')
        .unwrap_or(element.len());
    let name = &element[1.min(name_end)..name_end];
    let start_tag = &element[..start_tag_end];
    let declaration = if name.starts_with(b"stream:") {
        format!(" xmlns:stream='{STREAM_NS}'")
    } else if !contains(start_tag, b" xmlns=") {
        format!(" xmlns='{default_ns}'")
    } else {
        return element;
    };
    let mut out = Vec::with_capacity(element.len() + declaration.len());
    out.extend_from_slice(&element[..name_end]);
    out.extend_from_slice(declaration.as_bytes());
    out.extend_from_slice(&element[name_end..]);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "jabber:client";

    fn cut(chunks: &[&str]) -> Vec<Cut> {
        let mut cutter = Cutter::default();
        let mut out = Vec::new();
        for chunk in chunks {
            cutter.feed(chunk.as_bytes(), &mut |c| out.push(c));
        }
        out
    }

    fn element(text: &str) -> Cut {
        Cut::Element(text.as_bytes().to_vec())
    }

    #[test]
    fn a_stream_is_cut_into_its_header_elements_and_end() {
        let header =
            "<stream:stream xmlns='jabber:client' id='abc' from='localhost' version='1.0'>";
        let pieces = cut(&[
            "<?xml version='1.0'?>",
            header,
            "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
             <mechanism>PLAIN</mechanism></mechanisms></stream:features>",
            "<message to='a@b/c'><body>1 &lt; 2 &gt; 0</body></message> ",
            "<presence/><r xmlns='urn:xmpp:sm:3'/></stream:stream>",
        ]);
        assert_eq!(
            pieces,
            [
                Cut::Header(header.as_bytes().to_vec()),
                element(
                    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
                     <mechanism>PLAIN</mechanism></mechanisms></stream:features>"
                ),
                element("<message to='a@b/c'><body>1 &lt; 2 &gt; 0</body></message>"),
                element("<presence/>"),
                element("<r xmlns='urn:xmpp:sm:3'/>"),
                Cut::End,
            ]
        );
    }

    #[test]
    fn elements_are_cut_wherever_the_writes_split_them() {
        let text = "<iq type='result' id='a&apos;>b'><query xmlns='jabber:iq:roster'>\
                    <item jid='x@y' name='a &gt; b'/></query></iq>";
        let whole = cut(&[text]);
        for at in 1..text.len() {
            assert_eq!(cut(&[&text[..at], &text[at..]]), whole, "split at {at}");
        }
        assert_eq!(whole.len(), 1);
    }

    #[test]
    fn a_quoted_gt_in_an_attribute_does_not_end_the_tag() {
        assert_eq!(
            cut(&["<message id=\"a>b\"><body>x</body></message>"]),
            [element("<message id=\"a>b\"><body>x</body></message>")]
        );
    }

    #[test]
    fn elements_are_made_to_stand_alone() {
        let alone =
            |text: &str| String::from_utf8(standalone(text.as_bytes().to_vec(), CLIENT)).unwrap();
        assert_eq!(
            alone("<stream:error><x/></stream:error>"),
            format!("<stream:error xmlns:stream='{STREAM_NS}'><x/></stream:error>")
        );
        assert_eq!(alone("<presence/>"), "<presence xmlns='jabber:client'/>");
        assert_eq!(
            alone("<message to='a'><body>b</body></message>"),
            "<message xmlns='jabber:client' to='a'><body>b</body></message>"
        );
        assert_eq!(
            alone("<r xmlns='urn:xmpp:sm:3'/>"),
            "<r xmlns='urn:xmpp:sm:3'/>"
        );
    }
}
