//! XEP-0004 data forms as a typed value, for the forms a client is handed and fills in
//! (a room's configuration, XMPPRoom's `fetchConfigurationForm` / `configureRoomUsingOptions:`).
//!
//! `corvid_proto::forms` has the element helpers the server builds its forms with, but no
//! form type; this is the client's view: read a form into [`DataForm`], change values by
//! field `var`, and [`DataForm::to_submit`] it back. Elements are built with the proto
//! helpers so both sides write the same XML.

use corvid_proto::{forms, ns};
use corvid_xml::Element;

/// One field of a form (§3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormField {
    /// Its name.
    pub var: String,
    /// `boolean`, `text-single`, `list-single` …; `None` means `text-single` (§3.3).
    pub kind: Option<String>,
    /// What a person sees it as.
    pub label: Option<String>,
    /// Its values (one, except for `*-multi` fields).
    pub values: Vec<String>,
    /// The choices of a `list-*` field: (label, value).
    pub options: Vec<(Option<String>, String)>,
    /// It must be filled in.
    pub required: bool,
}

/// A data form: its type (`form`, `submit`, `cancel`, `result`), title, instructions and
/// fields, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataForm {
    /// `form`, `submit`, `cancel` or `result`.
    pub kind: String,
    /// Its title.
    pub title: Option<String>,
    /// Its instructions, a paragraph each.
    pub instructions: Vec<String>,
    /// Its fields, in order.
    pub fields: Vec<FormField>,
}

impl DataForm {
    /// The form an `<x xmlns='jabber:x:data'/>` element holds.
    pub fn parse(x: &Element) -> Option<DataForm> {
        if !x.is("x", ns::DATA_FORMS) {
            return None;
        }
        let texts = |name: &'static str| {
            x.children()
                .filter(move |c| c.is(name, ns::DATA_FORMS))
                .map(Element::text)
        };
        let fields = x
            .children()
            .filter(|c| c.is("field", ns::DATA_FORMS))
            .filter_map(|f| {
                Some(FormField {
                    var: f.attr("var")?.to_owned(),
                    kind: f.attr("type").map(str::to_owned),
                    label: f.attr("label").map(str::to_owned),
                    values: f
                        .children()
                        .filter(|v| v.is("value", ns::DATA_FORMS))
                        .map(Element::text)
                        .collect(),
                    options: f
                        .children()
                        .filter(|o| o.is("option", ns::DATA_FORMS))
                        .filter_map(|o| {
                            let value = o.get_child("value", ns::DATA_FORMS)?.text();
                            Some((o.attr("label").map(str::to_owned), value))
                        })
                        .collect(),
                    required: f.has_child("required", ns::DATA_FORMS),
                })
            })
            .collect();
        Some(DataForm {
            kind: x.attr("type").unwrap_or("form").to_owned(),
            title: texts("title").next(),
            instructions: texts("instructions").collect(),
            fields,
        })
    }

    /// An empty submission: "take the defaults" (XEP-0045 §10.1.2's instant room).
    pub fn empty_submit() -> DataForm {
        DataForm {
            kind: "submit".into(),
            ..DataForm::default()
        }
    }

    /// The form's `FORM_TYPE` (XEP-0068), when it names one.
    /// The form's type (its `FORM_TYPE` field, XEP-0068).
    pub fn form_type(&self) -> Option<&str> {
        self.value("FORM_TYPE")
    }

    /// The field named `var`.
    pub fn field(&self, var: &str) -> Option<&FormField> {
        self.fields.iter().find(|f| f.var == var)
    }

    /// The first value of field `var`.
    pub fn value(&self, var: &str) -> Option<&str> {
        self.field(var)
            .and_then(|f| f.values.first())
            .map(String::as_str)
    }

    /// A boolean field's value (§3.3: `1`/`true` or `0`/`false`).
    pub fn bool(&self, var: &str) -> Option<bool> {
        match self.value(var)? {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        }
    }

    /// Replaces the values of field `var`, adding the field if the form lacks it.
    pub fn set(&mut self, var: &str, values: &[&str]) -> &mut Self {
        let values: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        match self.fields.iter_mut().find(|f| f.var == var) {
            Some(field) => field.values = values,
            None => self.fields.push(FormField {
                var: var.to_owned(),
                values,
                ..FormField::default()
            }),
        }
        self
    }

    /// Sets a boolean field.
    pub fn set_bool(&mut self, var: &str, value: bool) -> &mut Self {
        self.set(var, &[if value { "1" } else { "0" }])
    }

    /// The submission of this form as filled in (§3.4): every field with its values,
    /// without labels and options; `FORM_TYPE` keeps its `hidden` type.
    pub fn to_submit(&self) -> DataForm {
        DataForm {
            kind: "submit".into(),
            title: None,
            instructions: Vec::new(),
            fields: self
                .fields
                .iter()
                .filter(|f| f.kind.as_deref() != Some("fixed"))
                .map(|f| FormField {
                    var: f.var.clone(),
                    kind: (f.var == "FORM_TYPE").then(|| "hidden".to_owned()),
                    values: f.values.clone(),
                    ..FormField::default()
                })
                .collect(),
        }
    }

    /// The `<x xmlns='jabber:x:data'/>` element.
    pub fn to_element(&self) -> Element {
        let mut x = forms::form(&self.kind);
        if let Some(title) = &self.title {
            x.append_child(forms::text("title", title));
        }
        for text in &self.instructions {
            x.append_child(forms::text("instructions", text));
        }
        for field in &self.fields {
            let values: Vec<&str> = field.values.iter().map(String::as_str).collect();
            let mut el = forms::field(
                &field.var,
                field.kind.as_deref().unwrap_or(""),
                field.label.as_deref(),
                &values,
            );
            if field.kind.is_none() {
                el.remove_attr("type");
            }
            for (label, value) in &field.options {
                let mut option = Element::new("option", ns::DATA_FORMS)
                    .with_child(Element::new("value", ns::DATA_FORMS).with_text(value.clone()));
                if let Some(label) = label {
                    option.set_attr("label", label.clone());
                }
                el.append_child(option);
            }
            if field.required {
                el.append_child(Element::new("required", ns::DATA_FORMS));
            }
            x.append_child(el);
        }
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_reads_changes_and_submits() {
        let mut x = forms::form("form");
        x.append_child(forms::text("title", "Configure"));
        x.append_child(forms::form_type_field(ns::MUC_ROOMCONFIG));
        x.append_child(forms::field("fixed-note", "fixed", None, &["read me"]));
        let mut list = forms::field("whois", "list-single", Some("Who"), &["moderators"]);
        list.append_child(
            Element::new("option", ns::DATA_FORMS)
                .with_attr("label", "Anyone")
                .with_child(Element::new("value", ns::DATA_FORMS).with_text("anyone")),
        );
        x.append_child(list);
        x.append_child(forms::field("members", "boolean", None, &["0"]));

        let mut form = DataForm::parse(&x).unwrap();
        assert_eq!(form.kind, "form");
        assert_eq!(form.title.as_deref(), Some("Configure"));
        assert_eq!(form.form_type(), Some(ns::MUC_ROOMCONFIG));
        assert_eq!(
            form.field("whois").unwrap().options,
            [(Some("Anyone".into()), "anyone".into())]
        );
        assert_eq!(form.bool("members"), Some(false));
        form.set_bool("members", true).set("name", &["Balcony"]);

        let submitted = DataForm::parse(&form.to_submit().to_element()).unwrap();
        assert_eq!(submitted.kind, "submit");
        assert_eq!(submitted.bool("members"), Some(true));
        assert_eq!(submitted.value("name"), Some("Balcony"));
        assert!(submitted.field("fixed-note").is_none());
        assert_eq!(
            submitted.field("FORM_TYPE").unwrap().kind.as_deref(),
            Some("hidden")
        );
        assert_eq!(submitted.field("whois").unwrap().kind, None);
    }

    #[test]
    fn not_a_form() {
        assert!(DataForm::parse(&Element::new("x", ns::MUC_USER)).is_none());
    }
}
