//! Children as YAML that kubectl, Argo CD and Flux (YAML 1.1 readers) read as written.

/// Serializes children as a multi-document YAML stream.
pub fn to_yaml(values: &[serde_json::Value]) -> Result<String, serde_yaml_ng::Error> {
    let mut out = String::new();
    for v in values {
        out.push_str("---\n");
        out.push_str(&yaml_for_kubectl(v)?);
    }
    Ok(out)
}

/// `v` as YAML that YAML 1.1 readers take as `v` too. serde_yaml_ng writes YAML 1.2, where `yes`,
/// `on`, `1_000` or `2024-01-01` are plain strings; kubectl, Argo CD and Flux read YAML 1.1
/// (sigs.k8s.io/yaml), where they are a boolean, a number and a timestamp, so `flotilla render
/// | kubectl apply -f -` would fail on `MYSQL_RANDOM_ROOT_PASSWORD: yes`. Such strings are
/// written quoted: each is swapped for a unique plain token, and the token for the quoted string.
pub fn yaml_for_kubectl(v: &serde_json::Value) -> Result<String, serde_yaml_ng::Error> {
    const TOKEN: &str = "flotillaquotedscalar";
    fn swap(v: &mut serde_json::Value, found: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if ambiguous_in_yaml_1_1(s) => {
                let token = format!("{TOKEN}{}x", found.len());
                found.push(std::mem::replace(s, token));
            }
            serde_json::Value::Array(xs) => xs.iter_mut().for_each(|x| swap(x, found)),
            serde_json::Value::Object(m) => m.values_mut().for_each(|x| swap(x, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    let mut v = v.clone();
    let text = serde_json::to_string(&v).unwrap_or_default();
    if !text.contains(TOKEN) {
        swap(&mut v, &mut found);
    }
    let mut out = serde_yaml_ng::to_string(&v)?;
    // Last first, so that token 1 is not replaced inside token 10.
    for (i, s) in found.iter().enumerate().rev() {
        out = out.replace(&format!("{TOKEN}{i}x"), &format!("'{s}'"));
    }
    Ok(out)
}

/// Whether a YAML 1.1 reader would take the plain scalar `s` for something other than a string
/// (a boolean, null, a number with `_` or a base prefix, a sexagesimal number, a timestamp, a
/// merge or value key). Errs on the side of quoting: a quoted string is always read as one.
fn ambiguous_in_yaml_1_1(s: &str) -> bool {
    const WORDS: [&str; 14] = ["y", "yes", "n", "no", "on", "off", "true", "false", "null", "~", "=", "<<", "", ".inf"];
    let lower = s.to_ascii_lowercase();
    if WORDS.contains(&lower.as_str()) || lower == ".nan" || lower == "-.inf" || lower == "+.inf" {
        return true;
    }
    let numeric_start = s.trim_start_matches(['-', '+', '.']).starts_with(|c: char| c.is_ascii_digit());
    numeric_start && s.chars().all(|c| c.is_ascii_hexdigit() || "+-._:xXoO tTzZ".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_yaml_1_1_reads_otherwise_are_quoted() {
        for s in [
            "yes",
            "No",
            "ON",
            "off",
            "y",
            "N",
            "~",
            "null",
            "1_000",
            "0777",
            "0x1F",
            "2024-01-01",
            "12:30",
            "1e3",
            "<<",
        ] {
            let out = yaml_for_kubectl(&serde_json::json!({"k": s})).unwrap();
            assert!(out == format!("k: '{s}'\n") || out == format!("k: \"{s}\"\n"), "{s:?} written as {out:?}");
        }
        for s in ["128Mi", "100m", "postgres:17", "/healthz", "RuntimeDefault", "yesterday", "2Gi"] {
            assert_eq!(yaml_for_kubectl(&serde_json::json!({"k": s})).unwrap(), format!("k: {s}\n"));
        }
        // Tokens are replaced whole: the eleventh does not take the second's place.
        let many: Vec<&str> = std::iter::repeat_n("on", 12).collect();
        let out = yaml_for_kubectl(&serde_json::json!(many)).unwrap();
        assert_eq!(out.matches("- 'on'").count(), 12, "{out}");
    }
}
