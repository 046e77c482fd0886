//! The formats Kubernetes gives names: DNS labels and subdomains, host names, port names, label
//! keys and values, and label selectors. Each check says why a string is not one, or None.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::rules;

/// Why `s` is not a DNS-1035 label of at most `max` characters, or None when it is one.
pub fn dns1035_label(s: &str, max: usize) -> Option<String> {
    if let Some(why) = dns1123_label(s, max) {
        return Some(why);
    }
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some("must start with a lowercase letter".into());
    }
    None
}

/// Why `s` is not a DNS-1123 label of at most `max` characters, or None when it is one.
pub fn dns1123_label(s: &str, max: usize) -> Option<String> {
    if s.is_empty() {
        return Some("must not be empty".into());
    }
    if s.len() > max {
        return Some(format!("is {} characters long; at most {max} are allowed", s.len()));
    }
    if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Some("may contain only lowercase letters, digits and '-'".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with a letter or digit".into());
    }
    None
}

pub(super) fn dns1123_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some(format!("is {} characters long; at most 253 are allowed", s.len()));
    }
    s.split('.')
        .find_map(|part| dns1123_label(part, 63))
        .map(|why| format!("is not a DNS-1123 subdomain: each part {why}"))
}

pub(super) fn hostname(s: &str) -> Option<String> {
    dns1123_subdomain(s.strip_prefix("*.").unwrap_or(s)).map(|why| why.replace("DNS-1123 subdomain", "host name"))
}

pub(super) fn port_name(s: &str) -> Option<String> {
    if let Some(why) = dns1123_label(s, rules::MAX_PORT_NAME_LEN) {
        return Some(why);
    }
    if s.contains("--") {
        return Some("must not contain '--'".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        return Some(rules::PORT_NAME_LETTER.into());
    }
    None
}

pub(super) fn label_key(k: &str) -> Option<String> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    if let Some(p) = prefix
        && let Some(why) = dns1123_subdomain(p)
    {
        return Some(format!("prefix {p:?} {why}"));
    }
    if name.is_empty() || name.len() > 63 {
        return Some(format!("name {name:?} must be 1 to 63 characters"));
    }
    label_value(name)
}

pub(super) fn label_value(v: &str) -> Option<String> {
    if v.len() > 63 {
        return Some(format!("is {} characters long; at most 63 are allowed", v.len()));
    }
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edge_ok = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if !v.chars().all(ok_char) || !edge_ok(v.chars().next()) || !edge_ok(v.chars().last()) {
        return Some(
            "may contain only letters, digits, '-', '_' and '.', and must start and end with a letter or digit".into(),
        );
    }
    None
}

/// A label selector at `path`: its matchLabels and matchExpressions.
pub(super) fn label_selector(path: &str, s: &LabelSelector, err: &mut impl FnMut(String, String)) {
    for (k, v) in s.match_labels.iter().flatten() {
        if let Some(why) = label_key(k) {
            err(format!("{path}.matchLabels[{k:?}]"), format!("key {why}"));
        } else if let Some(why) = label_value(v) {
            err(format!("{path}.matchLabels[{k:?}]"), format!("value {v:?} {why}"));
        }
    }
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let at = format!("{path}.matchExpressions[{i}]");
        if let Some(why) = label_key(&e.key) {
            err(format!("{at}.key"), format!("{:?} {why}", e.key));
        }
        let values = e.values.as_ref().map_or(0, Vec::len);
        match e.operator.as_str() {
            "In" | "NotIn" if values == 0 => {
                err(format!("{at}.values"), format!("must not be empty with operator {}", e.operator))
            }
            "Exists" | "DoesNotExist" if values > 0 => {
                err(format!("{at}.values"), format!("must be empty with operator {}", e.operator))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            op => err(format!("{at}.operator"), format!("{op:?} must be In, NotIn, Exists or DoesNotExist")),
        }
        for (j, v) in e.values.iter().flatten().enumerate() {
            if let Some(why) = label_value(v) {
                err(format!("{at}.values[{j}]"), format!("{v:?} {why}"));
            }
        }
    }
}
