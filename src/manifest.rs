//! Reading Microservices from YAML files, as `flotilla render` does: strict about unknown fields
//! and wrong types, and precise about where each problem is.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use std::sync::Arc;

use crate::api::defaults::DEFAULT_NAMESPACE;
use crate::api::{DatabaseClass, Microservice};
use crate::render::World;
use crate::render::hosts::HostClaim;
use crate::validate::{FieldError, validate};

/// What a set of files holds.
#[derive(Debug, Default)]
pub struct Manifests {
    pub microservices: Vec<Microservice>,
    pub database_classes: Vec<DatabaseClass>,
    /// The hosts of the Ingresses among the files (not Flotilla's children): they hold their
    /// hosts as such Ingresses in a cluster do.
    pub ingress_hosts: Vec<HostClaim>,
    /// Documents of other kinds, left alone: `file: apiVersion/kind name`.
    pub skipped: Vec<String>,
    /// Where each object was read (`kind`, namespace, name → file and document), so that a second
    /// definition is refused rather than silently replacing or shadowing the first.
    origins: HashMap<(&'static str, String, String), (PathBuf, usize)>,
}

impl Manifests {
    /// The world these files are rendered in, as `flotilla render` does: their Microservices,
    /// DatabaseClasses and Ingresses, and the default settings.
    pub fn world(&self) -> World {
        World {
            microservices: self.microservices.iter().cloned().map(Arc::new).collect(),
            database_classes: self.database_classes.iter().cloned().map(Arc::new).collect(),
            foreign_ingresses: self.ingress_hosts.clone(),
            ..World::default()
        }
    }

    /// Records that `kind` `namespace/name` was read at `file`, document `document`; when it
    /// already was, the error names the first place.
    fn claim(
        &mut self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        file: &Path,
        document: usize,
    ) -> Result<(), FieldError> {
        match self.origins.entry((kind, namespace.to_string(), name.to_string())) {
            Entry::Occupied(first) => {
                let (f, d) = first.get();
                let what = if namespace.is_empty() { name.to_string() } else { format!("{namespace}/{name}") };
                Err(FieldError::new(
                    "metadata.name",
                    format!("{kind} {what} is defined twice; first in {} (document {d})", f.display()),
                ))
            }
            Entry::Vacant(slot) => {
                slot.insert((file.to_path_buf(), document));
                Ok(())
            }
        }
    }
}

/// A problem in one document of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    /// 1-based index of the YAML document in the file.
    pub document: usize,
    pub error: FieldError,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {}): {}", self.file.display(), self.document, self.error)
    }
}

/// Reads every file (directories: their `*.yaml`/`*.yml` files, sorted), validates every
/// Microservice, and gives either all objects or all problems.
pub fn load(paths: &[PathBuf], namespace: Option<&str>) -> Result<Manifests, Vec<LoadError>> {
    let mut out = Manifests::default();
    let mut errors = Vec::new();
    for file in expand(paths, &mut errors) {
        match std::fs::read_to_string(&file) {
            Ok(text) => load_str(&text, &file, namespace, &mut out, &mut errors),
            Err(e) => errors.push(LoadError { file, document: 0, error: FieldError::new("file", e.to_string()) }),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn expand(paths: &[PathBuf], errors: &mut Vec<LoadError>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(entries) => {
                    let mut inner: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| f.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                        // A kustomization describes files, it is not an object.
                        .filter(|f| f.file_stem().is_none_or(|s| s != "kustomization"))
                        .collect();
                    inner.sort();
                    files.extend(inner);
                }
                Err(e) => errors.push(LoadError {
                    file: p.clone(),
                    document: 0,
                    error: FieldError::new("directory", e.to_string()),
                }),
            }
        } else {
            files.push(p.clone());
        }
    }
    files
}

/// The largest document read: the API server takes no request body larger than 3 MiB
/// (`--max-request-bytes`), so no larger object can be applied, and refusing it before parsing
/// keeps memory proportional to what could be applied.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// The 1-based index of the first document of `text` larger than [`MAX_DOCUMENT_BYTES`] and the
/// bytes read of it when that was seen, splitting at `---` lines as `kubectl` does.
fn oversized_document(text: &str) -> Option<(usize, usize)> {
    if text.len() <= MAX_DOCUMENT_BYTES {
        return None;
    }
    let (mut document, mut size, mut content) = (1, 0, false);
    for line in text.split_inclusive('\n') {
        if line.starts_with("---") && line[3..].trim().is_empty() {
            if content {
                document += 1;
            }
            (size, content) = (0, false);
            continue;
        }
        size += line.len();
        content |= !line.trim().is_empty() && !line.trim_start().starts_with('#');
        if size > MAX_DOCUMENT_BYTES {
            return Some((document, size));
        }
    }
    None
}

/// Parses one YAML stream into `out`, appending every problem to `errors`.
pub fn load_str(text: &str, file: &Path, namespace: Option<&str>, out: &mut Manifests, errors: &mut Vec<LoadError>) {
    if let Some((document, seen)) = oversized_document(text) {
        errors.push(LoadError {
            file: file.to_path_buf(),
            document,
            error: FieldError::new(
                ".",
                format!(
                    "the document is larger than {MAX_DOCUMENT_BYTES} bytes (over {seen} read before stopping), the \
                     most the API server takes in one object; nothing of this file was read"
                ),
            ),
        });
        return;
    }
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let mut fail = |error: FieldError| errors.push(LoadError { file: file.to_path_buf(), document, error });
        let mut value = match serde_json::Value::deserialize(doc) {
            Ok(serde_json::Value::Null) => continue,
            Ok(v @ serde_json::Value::Object(_)) => v,
            Ok(_) => {
                fail(FieldError::new(".", "a document must be a mapping with apiVersion, kind and metadata"));
                continue;
            }
            Err(e) => {
                fail(FieldError::new("yaml", e.to_string()));
                // The stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        let api_version = value.get("apiVersion").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        if api_version.starts_with("flotilla.dev/")
            && let Some(map) = value.as_object_mut()
        {
            // The typed objects carry these implicitly; anything else left over is unknown.
            map.remove("apiVersion");
            map.remove("kind");
        }
        match (api_version.as_str(), kind.as_str()) {
            ("flotilla.dev/v1alpha1", "Microservice") => match strict::<Microservice>(value) {
                Ok(mut ms) => {
                    match (ms.metadata.namespace.as_deref(), namespace) {
                        (Some(own), Some(flag)) if own != flag => fail(FieldError::new(
                            "metadata.namespace",
                            format!("{own:?} does not match the namespace {flag:?} given with -n"),
                        )),
                        (Some(_), _) => {}
                        (None, flag) => ms.metadata.namespace = Some(flag.unwrap_or(DEFAULT_NAMESPACE).to_string()),
                    }
                    let errs = validate(&ms);
                    if !errs.is_empty() {
                        errs.into_iter().for_each(fail);
                    } else {
                        let ns = ms.ns().to_string();
                        let name = ms.metadata.name.clone().unwrap_or_default();
                        match out.claim("Microservice", &ns, &name, file, document) {
                            Ok(()) => out.microservices.push(ms),
                            Err(e) => fail(e),
                        }
                    }
                }
                Err(errs) => errs.into_iter().for_each(fail),
            },
            ("flotilla.dev/v1alpha1", "DatabaseClass") => match strict::<DatabaseClass>(value) {
                Ok(dc) => {
                    let name = dc.metadata.name.clone().unwrap_or_default();
                    match out.claim("DatabaseClass", "", &name, file, document) {
                        Ok(()) => out.database_classes.push(dc),
                        Err(e) => fail(e),
                    }
                }
                Err(errs) => errs.into_iter().for_each(fail),
            },
            ("", _) => fail(FieldError::new("apiVersion", "is required")),
            (_, "") => fail(FieldError::new("kind", "is required")),
            (_, _) if api_version.starts_with("flotilla.dev/") => fail(FieldError::new(
                "kind",
                format!(
                    "{api_version}/{kind} is not a Flotilla kind; expected flotilla.dev/v1alpha1 Microservice or DatabaseClass"
                ),
            )),
            _ => {
                let name = value.pointer("/metadata/name").and_then(|v| v.as_str()).unwrap_or("");
                if (api_version.as_str(), kind.as_str()) == ("networking.k8s.io/v1", "Ingress") {
                    let ns = value.pointer("/metadata/namespace").and_then(|v| v.as_str());
                    let ns = ns.or(namespace).unwrap_or(DEFAULT_NAMESPACE);
                    let rules = value.pointer("/spec/rules").and_then(|r| r.as_array()).into_iter().flatten();
                    for host in rules.filter_map(|r| r.get("host")?.as_str()) {
                        out.ingress_hosts.push(HostClaim {
                            namespace: ns.to_string(),
                            name: name.to_string(),
                            host: host.to_ascii_lowercase(),
                            created: None,
                        });
                    }
                }
                out.skipped.push(format!("{}: {api_version}/{kind} {name}", file.display()));
            }
        }
    }
}

/// Deserializes `value` into `T`, refusing unknown fields and naming the path of every problem.
pub fn strict<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Vec<FieldError>> {
    let mut unknown = Vec::new();
    let mut record = |path: serde_ignored::Path| unknown.push(json_path(&path.to_string()));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(de);
    let mut errs: Vec<FieldError> = unknown
        .into_iter()
        .map(|p| FieldError::new(p, "unknown field (check the spelling; `kubectl explain` lists the fields)"))
        .collect();
    match parsed {
        Ok(t) if errs.is_empty() => Ok(t),
        Ok(_) => Err(errs),
        Err(e) => {
            let mut path = json_path(&e.path().to_string());
            let mut message = e.into_inner().to_string();
            // "spec: missing field `image`" reads better as "spec.image: is required".
            if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
                path = if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
                message = "is required".into();
            }
            errs.push(FieldError::new(if path.is_empty() { ".".into() } else { path }, message));
            Err(errs)
        }
    }
}

/// Turns `spec.ports.0.name` into `spec.ports[0].name`.
fn json_path(p: &str) -> String {
    let mut out = String::new();
    for part in p.split('.').filter(|s| !s.is_empty() && *s != "?") {
        if part.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}
