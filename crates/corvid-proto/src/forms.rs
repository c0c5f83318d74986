//! XEP-0004 data forms: building the forms Corvid sends (registration, room
//! configuration, voice requests, and publish-subscribe to come) and reading the ones
//! clients submit. Field types must be those of the form's registry (XEP-0068); the MUC
//! and registration modules test theirs against the registries.

use corvid_xml::Element;

use crate::ns;

/// An empty `<x xmlns='jabber:x:data' type=…/>` (§3.1: form, submit, cancel, result).
pub fn form(kind: &str) -> Element {
    Element::new("x", ns::DATA_FORMS).with_attr("type", kind)
}

/// A `<field/>` with its type, an optional label and its values (§3.2).
pub fn field(var: &str, kind: &str, label: Option<&str>, values: &[&str]) -> Element {
    let mut field = Element::new("field", ns::DATA_FORMS)
        .with_attr("var", var)
        .with_attr("type", kind);
    if let Some(label) = label {
        field.set_attr("label", label);
    }
    for value in values {
        field.append_child(Element::new("value", ns::DATA_FORMS).with_text(*value));
    }
    field
}

/// The hidden `FORM_TYPE` field that names a form's registry (XEP-0068 §2).
pub fn form_type_field(form_type: &str) -> Element {
    field("FORM_TYPE", "hidden", None, &[form_type])
}

/// A `<title/>` or `<instructions/>` child.
pub fn text(name: &str, text: &str) -> Element {
    Element::new(name, ns::DATA_FORMS).with_text(text)
}

/// The values of a form's field `var`, in order (empty when the field is absent).
pub fn values(form: &Element, var: &str) -> Vec<String> {
    form.children()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .map(|f| {
            f.children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect()
        })
        .unwrap_or_default()
}

/// The first value of a form's field `var`.
pub fn value(form: &Element, var: &str) -> Option<String> {
    values(form, var).into_iter().next()
}

/// A submitted form with these single-valued fields (what a client sends; used by tests).
pub fn submit(fields: &[(&str, &str)]) -> Element {
    let mut x = form("submit");
    for (var, value) in fields {
        x.append_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", *var)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
        );
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_form_reads_back() {
        let mut x = form("form");
        x.append_child(form_type_field("urn:example"));
        x.append_child(field(
            "colours",
            "list-multi",
            Some("Colours"),
            &["red", "blue"],
        ));
        assert_eq!(x.attr("type"), Some("form"));
        assert_eq!(value(&x, "FORM_TYPE").as_deref(), Some("urn:example"));
        assert_eq!(values(&x, "colours"), ["red", "blue"]);
        assert!(values(&x, "missing").is_empty());
        let colours = x.children().nth(1).unwrap();
        assert_eq!(colours.attr("label"), Some("Colours"));
        assert_eq!(colours.attr("type"), Some("list-multi"));
    }

    #[test]
    fn a_submitted_form_has_untyped_fields() {
        let x = submit(&[("username", "alice")]);
        assert_eq!(x.attr("type"), Some("submit"));
        assert_eq!(value(&x, "username").as_deref(), Some("alice"));
        assert_eq!(x.children().next().unwrap().attr("type"), None);
    }
}
