//! The metric and label names that the alerts (`config/prometheus/prometheusrule.yaml`) and the
//! Grafana dashboard (`config/grafana/flotilla-dashboard.json`) use, for tests/monitoring.rs and
//! tests/cluster_monitoring.rs: a PromQL tokenizer that tells metric names from functions,
//! aggregations, keywords, label names, strings, numbers, durations and Grafana's variables, and a
//! reader of the exposition text that /metrics serves.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

/// Series the alerts and the dashboard read that the operator does not export, and whence
/// they come. Anything else they name must be a series of the operator's /metrics.
pub const EXTERNAL_METRICS: &[(&str, &str)] = &[
    ("up", "Prometheus, for every scrape of a target"),
    ("container_memory_working_set_bytes", "the kubelet's cAdvisor"),
    ("container_cpu_usage_seconds_total", "the kubelet's cAdvisor"),
];

/// Labels a scrape through the ServiceMonitor adds to every series (the target's), and the
/// cAdvisor series' own `namespace`/`pod`/`container`.
pub const TARGET_LABELS: &[&str] = &["job", "namespace", "pod", "service", "endpoint", "instance", "container"];

/// PromQL's functions (Prometheus v3.16's `promql/parser/functions.go`, experimental ones included).
#[rustfmt::skip]
const FUNCTIONS: &[&str] = &[
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month", "day_of_week",
    "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "end", "exp",
    "first_over_time", "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_quantiles", "histogram_stddev", "histogram_stdvar", "histogram_sum", "hour", "idelta", "increase",
    "info", "integral", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_of", "max_over_time", "min_of", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "range", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "start", "start_timestamp",
    "stddev_over_time", "stdvar_over_time", "step", "sum_over_time", "tan", "tanh", "time", "timestamp",
    "ts_of_first_over_time", "ts_of_last_over_time", "ts_of_max_over_time", "ts_of_min_over_time", "vector", "year",
];

/// Aggregation operators: followed by `(` or by `by`/`without`, never a metric.
#[rustfmt::skip]
const AGGREGATIONS: &[&str] = &[
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
    "limitk", "limit_ratio",
];

/// Keywords that take a list of label names in parentheses.
const LABEL_LIST_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];

/// Other keywords and binary operators spelled as words (`lex.go`'s `key`), and `inf`/`nan`.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "atan2", "bool", "offset", "smoothed", "anchored", "fill", "fill_left", "fill_right",
    "max_of", "min_of", "inf", "nan",
];

/// What an expression uses.
#[derive(Debug, Default, PartialEq)]
pub struct Names {
    pub metrics: BTreeSet<String>,
    pub labels: BTreeSet<String>,
    pub functions: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Number,
    /// A Grafana variable (`$__rate_interval`, `${job}`, `[[pod]]`).
    Variable,
    /// Punctuation and symbolic operators (`(`, `=~`, `>=`, ...).
    Sym(&'static str),
}

const SYMBOLS: &[&str] = &[
    "==", "!=", "=~", "!~", ">=", "<=", "(", ")", "{", "}", "[", "]", ",", "=", ">", "<", "+", "-", "*", "/", "%", "^",
    "@", ":",
];

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let s: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_';
    let ident_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < s.len() {
        let c = s[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < s.len() && s[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut text = String::new();
            i += 1;
            loop {
                let Some(&d) = s.get(i) else { return Err(format!("unterminated string in {expr:?}")) };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    text.push(*s.get(i).ok_or_else(|| format!("unterminated escape in {expr:?}"))?);
                    i += 1;
                } else {
                    text.push(d);
                }
            }
            out.push(Tok::Str(text));
        } else if c.is_ascii_digit() || (c == '.' && s.get(i + 1).is_some_and(char::is_ascii_digit)) {
            // Numbers (0.99, 1e-3, 0x1f) and durations (5m, 1h30m, 500ms): never a name.
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '.' || s[i] == '_') {
                let exponent = (s[i] == 'e' || s[i] == 'E') && matches!(s.get(i + 1), Some('+' | '-'));
                i += if exponent { 2 } else { 1 };
            }
            out.push(Tok::Number);
        } else if c == '$' {
            i += 1;
            if s.get(i) == Some(&'{') {
                while i < s.len() && s[i] != '}' {
                    i += 1;
                }
                if i == s.len() {
                    return Err(format!("unterminated ${{ in {expr:?}"));
                }
                i += 1;
            } else {
                let start = i;
                while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == '_') {
                    i += 1;
                }
                if i == start {
                    return Err(format!("a lone $ in {expr:?}"));
                }
            }
            out.push(Tok::Variable);
        } else if c == '[' && s.get(i + 1) == Some(&'[') {
            let rest: String = s[i..].iter().collect();
            let end = rest.find("]]").ok_or_else(|| format!("unterminated [[ in {expr:?}"))?;
            i += rest[..end + 2].chars().count();
            out.push(Tok::Variable);
        } else if ident_start(c) {
            let start = i;
            while i < s.len() && ident_char(s[i]) {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].iter().collect()));
        } else {
            let rest: String = s[i..(i + 2).min(s.len())].iter().collect();
            let sym = SYMBOLS
                .iter()
                .find(|sym| rest.starts_with(**sym))
                .ok_or_else(|| format!("unexpected {c:?} in {expr:?}"))?;
            i += sym.len();
            out.push(Tok::Sym(sym));
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Open {
    /// `(` of a call, a grouping or an aggregation's argument list.
    Paren,
    /// `(` of `by (...)`, `on (...)` and the like.
    LabelList,
    /// `{` of a selector's matchers.
    Matchers,
    /// `[` of a range or a subquery.
    Range,
}

/// The metric names, label names and functions of one PromQL expression (Grafana's variables
/// allowed). Fails on what it cannot read: an unknown function, an unbalanced bracket, a token
/// where PromQL has none.
pub fn names(expr: &str) -> Result<Names, String> {
    let toks = lex(expr)?;
    let mut out = Names::default();
    let mut stack: Vec<Open> = Vec::new();
    // The next `(` opens a label list (after `by`, `on`, ...).
    let mut label_list_next = false;
    for (i, tok) in toks.iter().enumerate() {
        let next = toks.get(i + 1);
        let top = stack.last().copied();
        match tok {
            Tok::Sym("(") => {
                stack.push(if std::mem::take(&mut label_list_next) { Open::LabelList } else { Open::Paren });
                continue;
            }
            Tok::Sym("{") => stack.push(Open::Matchers),
            Tok::Sym("[") => stack.push(Open::Range),
            Tok::Sym(close @ (")" | "}" | "]")) => {
                let want = match *close {
                    ")" => [Open::Paren, Open::LabelList].as_slice(),
                    "}" => &[Open::Matchers],
                    _ => &[Open::Range],
                };
                match stack.pop() {
                    Some(open) if want.contains(&open) => {}
                    other => return Err(format!("{close:?} closes {other:?} in {expr:?}")),
                }
            }
            Tok::Ident(word) | Tok::Str(word) if top == Some(Open::Matchers) => {
                let is_matcher = matches!(next, Some(Tok::Sym("=" | "!=" | "=~" | "!~")));
                let after_op = i > 0 && matches!(toks[i - 1], Tok::Sym("=" | "!=" | "=~" | "!~"));
                if is_matcher {
                    out.labels.insert(word.clone());
                } else if after_op {
                    // A matcher's value.
                } else if matches!(tok, Tok::Str(_)) && matches!(next, Some(Tok::Sym("," | "}"))) {
                    // Prometheus 3's quoted metric name: {"name", label="x"}.
                    out.metrics.insert(word.clone());
                } else {
                    return Err(format!("{word:?} in a selector's braces is neither a matcher nor a name in {expr:?}"));
                }
            }
            Tok::Ident(word) if top == Some(Open::LabelList) => {
                out.labels.insert(word.clone());
            }
            Tok::Str(label) if top == Some(Open::LabelList) => {
                out.labels.insert(label.clone());
            }
            _ if top == Some(Open::Range) => {}
            Tok::Ident(word) => {
                let lower = word.to_ascii_lowercase();
                let opens = next == Some(&Tok::Sym("("));
                if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                    label_list_next = opens;
                    continue;
                } else if AGGREGATIONS.contains(&lower.as_str()) || KEYWORDS.contains(&lower.as_str()) {
                } else if opens {
                    if !FUNCTIONS.contains(&word.as_str()) {
                        return Err(format!("unknown function {word:?} in {expr:?}"));
                    }
                    out.functions.insert(word.clone());
                } else {
                    out.metrics.insert(word.clone());
                }
            }
            Tok::Str(_) | Tok::Number | Tok::Variable | Tok::Sym(_) => {}
        }
        label_list_next = false;
    }
    if let Some(open) = stack.last() {
        return Err(format!("{open:?} not closed in {expr:?}"));
    }
    Ok(out)
}

/// One PromQL expression and where it is written.
#[derive(Debug)]
pub struct Query {
    pub source: String,
    pub expr: String,
}

/// A dashboard variable's `label_values(SELECTOR, LABEL)`.
#[derive(Debug)]
pub struct LabelValues {
    pub source: String,
    pub selector: String,
    pub label: String,
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `config/prometheus/prometheusrule.yaml`, as JSON.
pub fn prometheus_rule() -> Value {
    serde_yaml_ng::from_str(&read("config/prometheus/prometheusrule.yaml")).expect("prometheusrule.yaml is YAML")
}

/// `config/grafana/flotilla-dashboard.json`.
pub fn dashboard() -> Value {
    serde_json::from_str(&read("config/grafana/flotilla-dashboard.json")).expect("the dashboard is JSON")
}

/// Every rule of the PrometheusRule: (its alert or record name, the rule).
pub fn rules(rule: &Value) -> Vec<(String, Value)> {
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("a group's rules").iter())
        .map(|r| {
            let name = r["alert"].as_str().or(r["record"].as_str()).expect("alert or record").to_string();
            (name, r.clone())
        })
        .collect()
}

pub fn rule_queries() -> Vec<Query> {
    rules(&prometheus_rule())
        .into_iter()
        .map(|(name, r)| Query { source: format!("alert {name}"), expr: r["expr"].as_str().expect("expr").to_string() })
        .collect()
}

/// Every panel, those inside collapsed rows included.
pub fn panels(dashboard: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        out.extend(p["panels"].as_array().into_iter().flatten().cloned());
    }
    out
}

pub fn dashboard_queries() -> Vec<Query> {
    let d = dashboard();
    let mut out = Vec::new();
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            let expr = t["expr"].as_str().unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push(Query { source: format!("panel {title:?} query {}", t["refId"]), expr: expr.into() });
        }
    }
    out
}

/// The dashboard's query variables, each a `label_values(SELECTOR, LABEL)`.
pub fn dashboard_variables() -> Vec<LabelValues> {
    let d = dashboard();
    let mut out = Vec::new();
    for v in d["templating"]["list"].as_array().expect("templating.list") {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap_or("?");
        let query = v["query"]["query"].as_str().or(v["query"].as_str()).expect("a variable's query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: label_values(SELECTOR, LABEL) expected, got {query:?}"));
        let (selector, label) =
            inner.rsplit_once(',').unwrap_or_else(|| panic!("variable {name}: label_values with a selector expected"));
        out.push(LabelValues {
            source: format!("variable {name}"),
            selector: selector.trim().into(),
            label: label.trim().into(),
        });
    }
    out
}

/// Every expression of the alerts and the dashboard, variables' selectors included.
pub fn all_queries() -> Vec<Query> {
    let mut out = rule_queries();
    out.extend(dashboard_queries());
    out.extend(dashboard_variables().into_iter().map(|v| Query { source: v.source, expr: v.selector }));
    out
}

/// The series of an exposition text (Prometheus text or OpenMetrics), each with its label names.
pub fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_string()).or_default();
        if line[end..].starts_with('{') {
            let mut rest = &line[end + 1..];
            // name="value" pairs; values may hold commas, braces and escaped quotes.
            while let Some(eq) = rest.find('=') {
                labels.insert(rest[..eq].trim_start_matches([',', ' ']).to_string());
                let value = &rest[eq + 1..];
                assert!(value.starts_with('"'), "a label value is quoted: {line}");
                let mut chars = value.char_indices().skip(1);
                let mut close = None;
                while let Some((j, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => {
                            close = Some(j);
                            break;
                        }
                        _ => {}
                    }
                }
                let close = close.unwrap_or_else(|| panic!("unterminated label value: {line}"));
                rest = &value[close + 1..];
                if rest.starts_with('}') {
                    break;
                }
            }
        }
    }
    out
}

/// Checks every query's metric and label names against `series` (from /metrics): each metric is
/// a series there or one of [`EXTERNAL_METRICS`]; each label is a label of a series the query
/// names or one of [`TARGET_LABELS`]. Returns the problems, one a line, and the names used.
pub fn check(
    queries: &[Query],
    variables: &[LabelValues],
    series: &BTreeMap<String, BTreeSet<String>>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let external: BTreeSet<&str> = EXTERNAL_METRICS.iter().map(|(m, _)| *m).collect();
    for q in queries {
        let n = match names(&q.expr) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!("{}: {e}", q.source));
                continue;
            }
        };
        if n.metrics.is_empty() {
            problems.push(format!("{}: names no metric: {:?}", q.source, q.expr));
        }
        for m in &n.metrics {
            used.insert(m.clone());
            if !series.contains_key(m) && !external.contains(m.as_str()) {
                problems.push(format!("{}: {m} is not a series the operator serves", q.source));
            }
        }
        problems.extend(unknown_labels(&q.source, &n.metrics, &n.labels, series));
    }
    for v in variables {
        if let Ok(n) = names(&v.selector) {
            problems.extend(unknown_labels(&v.source, &n.metrics, &BTreeSet::from([v.label.clone()]), series));
        }
    }
    (problems, used)
}

/// The labels of `labels` that are on none of `metrics`' series nor a target label.
fn unknown_labels(
    source: &str,
    metrics: &BTreeSet<String>,
    labels: &BTreeSet<String>,
    series: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    labels
        .iter()
        .filter(|label| {
            !TARGET_LABELS.contains(&label.as_str())
                && !metrics.iter().any(|m| series.get(m).is_some_and(|ls| ls.contains(*label)))
        })
        .map(|label| format!("{source}: label {label:?} is on none of {metrics:?} nor a target label"))
        .collect()
}
