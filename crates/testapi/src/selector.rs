//! Label and field selectors, in the equality-based syntax the API accepts.

use std::collections::BTreeMap;

/// One requirement of a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    /// `key`
    Exists(String),
    /// `!key`
    NotExists(String),
    /// `key=value` or `key==value`
    Equals(String, String),
    /// `key!=value`
    NotEquals(String, String),
}

impl Requirement {
    fn parse(term: &str) -> Option<Requirement> {
        let term = term.trim();
        if term.is_empty() {
            return None;
        }
        if let Some((k, v)) = term.split_once("!=") {
            return Some(Requirement::NotEquals(k.trim().into(), v.trim().into()));
        }
        if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return Some(Requirement::Equals(k.trim().into(), v.trim().into()));
        }
        if let Some(k) = term.strip_prefix('!') {
            return Some(Requirement::NotExists(k.trim().into()));
        }
        if term.contains([' ', '(', ')']) {
            // Set-based requirements (`in`, `notin`) are not supported.
            return None;
        }
        Some(Requirement::Exists(term.into()))
    }

    fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        match self {
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::Equals(k, v) => get(k).as_deref() == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k).as_deref() != Some(v.as_str()),
        }
    }
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses `a=b,!c,d!=e`; `None` if a term is not in the supported syntax.
    pub fn parse(text: &str) -> Option<Selector> {
        if text.trim().is_empty() {
            return Some(Selector::default());
        }
        text.split(',')
            .map(Requirement::parse)
            .collect::<Option<_>>()
            .map(Selector)
    }

    /// Whether a set of labels satisfies the selector.
    pub fn matches_labels(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(|k| labels.get(k).cloned()))
    }

    /// The name a field selector selects when it is exactly
    /// `metadata.name=NAME`: what RBAC's `resourceNames` authorizes a list
    /// or watch by.
    pub fn only_name(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Requirement::Equals(field, name)] if field == "metadata.name" => Some(name),
            _ => None,
        }
    }

    /// Whether an object's namespace and name satisfy the selector as a field
    /// selector (`metadata.name`, `metadata.namespace`).
    pub fn matches_fields(&self, namespace: &str, name: &str) -> bool {
        self.0.iter().all(|r| {
            r.matches(|field| match field {
                "metadata.name" => Some(name.to_owned()),
                "metadata.namespace" => Some(namespace.to_owned()),
                _ => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let s = Selector::parse("!service.kubernetes.io/headless,app=web,tier!=db").unwrap();
        assert!(s.matches_labels(&labels(&[("app", "web")])));
        assert!(s.matches_labels(&labels(&[("app", "web"), ("tier", "fe")])));
        assert!(!s.matches_labels(&labels(&[("app", "web"), ("tier", "db")])));
        assert!(!s.matches_labels(&labels(&[
            ("app", "web"),
            ("service.kubernetes.io/headless", "")
        ])));
        assert!(!s.matches_labels(&labels(&[])));
        assert!(Selector::parse("").unwrap().matches_labels(&labels(&[])));
        assert!(Selector::parse("app")
            .unwrap()
            .matches_labels(&labels(&[("app", "")])));
        assert_eq!(Selector::parse("app in (a,b)"), None);
    }

    #[test]
    fn only_name() {
        let name = |s: &str| Selector::parse(s).unwrap().only_name().map(str::to_owned);
        assert_eq!(
            name("metadata.name=tcp-services"),
            Some("tcp-services".into())
        );
        assert_eq!(name("metadata.name==x"), Some("x".into()));
        assert_eq!(name(""), None);
        assert_eq!(name("metadata.name!=x"), None);
        assert_eq!(name("metadata.name=x,metadata.namespace=y"), None);
    }

    #[test]
    fn field_selectors() {
        let s = Selector::parse("metadata.name=node-1").unwrap();
        assert!(s.matches_fields("", "node-1"));
        assert!(!s.matches_fields("", "node-2"));
        let s = Selector::parse("metadata.namespace!=kube-system").unwrap();
        assert!(s.matches_fields("default", "x"));
        assert!(!s.matches_fields("kube-system", "x"));
    }
}
