//! An in-memory Kubernetes API for offline tests of the I/O half: objects stored by path, a
//! resourceVersion per write, 409 on a stale write or on creating what exists, 404 on what is
//! missing, a switch that takes the API down, and a log of every request.
//!
//! Server-side apply is modelled as far as field ownership goes: each manager owns the leaf
//! fields (object keys; a list is one field) of its last apply; a field its new apply leaves
//! out is removed unless another manager still owns it; a forced apply takes fields from other
//! managers. `metadata.managedFields` shows the owners in the API server's `fieldsV1` shape.
//! It knows nothing of any kind's semantics (no defaults, no garbage collection); the cluster
//! tests stay the proof of those.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Resource;
use kube::api::Api;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Clone, Default)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
}

/// A field's path from the object's root, by key.
type Field = Vec<String>;

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Value>,
    /// Per object path, per field manager: the fields of its last apply.
    owners: BTreeMap<String, BTreeMap<String, BTreeSet<Field>>>,
    version: u64,
    down: bool,
    requests: Vec<(Method, String)>,
}

impl FakeApi {
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { me.handle(req).await }
        });
        kube::Client::new(service, "default")
    }

    pub fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client(), namespace)
    }

    /// While down, every request fails as a connection would.
    pub fn set_down(&self, down: bool) {
        self.inner.lock().expect("fake API lock").down = down;
    }

    /// Stores `object` at `path` as it is, as if someone else had made it.
    pub fn put(&self, path: &str, mut object: Value) {
        let mut inner = self.inner.lock().expect("fake API lock");
        inner.stamp(&mut object);
        inner.objects.insert(path.into(), object);
    }

    /// The object stored at `path`.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.inner.lock().expect("fake API lock").objects.get(path).cloned()
    }

    /// Every request answered so far (method, path), and forgets them.
    pub fn take_requests(&self) -> Vec<(Method, String)> {
        std::mem::take(&mut self.inner.lock().expect("fake API lock").requests)
    }

    async fn handle(&self, req: Request<Body>) -> Result<Response<Body>, std::io::Error> {
        let method = req.method().clone();
        let path = req.uri().path().trim_end_matches('/').to_string();
        let query = req.uri().query().unwrap_or_default().to_string();
        let content_type =
            req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let bytes = req.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let mut inner = self.inner.lock().expect("fake API lock");
        if inner.down {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "the fake API is down"));
        }
        inner.requests.push((method.clone(), path.clone()));
        let (status, value) = match method {
            Method::PATCH => inner.patch(&path, &query, &content_type, body),
            _ => inner.answer(&method, &path, body),
        };
        let bytes = serde_json::to_vec(&value).map_err(std::io::Error::other)?;
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(bytes))
            .map_err(std::io::Error::other)
    }
}

impl Inner {
    fn answer(&mut self, method: &Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        match *method {
            Method::GET => match self.objects.get(path) {
                Some(o) => (StatusCode::OK, o.clone()),
                None => failure(StatusCode::NOT_FOUND, "NotFound", path),
            },
            Method::POST => {
                let Some(mut body) = body else { return failure(StatusCode::BAD_REQUEST, "BadRequest", path) };
                let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string) else {
                    return failure(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", "metadata.name is required");
                };
                let key = format!("{path}/{name}");
                if self.objects.contains_key(&key) {
                    return failure(StatusCode::CONFLICT, "AlreadyExists", &key);
                }
                self.stamp(&mut body);
                self.objects.insert(key, body.clone());
                (StatusCode::CREATED, body)
            }
            Method::PUT => {
                let Some(mut body) = body else { return failure(StatusCode::BAD_REQUEST, "BadRequest", path) };
                let Some(stored) = self.objects.get(path) else {
                    return failure(StatusCode::NOT_FOUND, "NotFound", path);
                };
                let sent = body.pointer("/metadata/resourceVersion").cloned();
                if sent.is_some() && sent.as_ref() != stored.pointer("/metadata/resourceVersion") {
                    return failure(StatusCode::CONFLICT, "Conflict", "the object has been modified");
                }
                self.stamp(&mut body);
                self.objects.insert(path.to_string(), body.clone());
                (StatusCode::OK, body)
            }
            Method::DELETE => match self.objects.remove(path) {
                Some(_) => {
                    self.owners.remove(path);
                    (StatusCode::OK, json!({"apiVersion": "v1", "kind": "Status", "status": "Success"}))
                }
                None => failure(StatusCode::NOT_FOUND, "NotFound", path),
            },
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", path),
        }
    }

    fn patch(&mut self, path: &str, query: &str, content_type: &str, body: Option<Value>) -> (StatusCode, Value) {
        let Some(body) = body else { return failure(StatusCode::BAD_REQUEST, "BadRequest", path) };
        let param = |key: &str| {
            query.split('&').find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('='))).map(str::to_string)
        };
        match content_type {
            "application/apply-patch+yaml" => {
                let Some(manager) = param("fieldManager") else {
                    return failure(StatusCode::BAD_REQUEST, "BadRequest", "fieldManager is required");
                };
                self.apply(path, &manager, param("force").as_deref() == Some("true"), body)
            }
            "application/merge-patch+json" => {
                let Some(stored) = self.objects.get(path) else {
                    return failure(StatusCode::NOT_FOUND, "NotFound", path);
                };
                let sent = body.pointer("/metadata/resourceVersion");
                if sent.is_some() && sent != stored.pointer("/metadata/resourceVersion") {
                    return failure(StatusCode::CONFLICT, "Conflict", "the object has been modified");
                }
                let mut object = stored.clone();
                merge(&mut object, &body);
                self.stamp(&mut object);
                self.objects.insert(path.into(), object.clone());
                (StatusCode::OK, object)
            }
            other => failure(StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", other),
        }
    }

    /// Server-side apply of `body` by `manager` (see the module's documentation).
    fn apply(&mut self, path: &str, manager: &str, force: bool, body: Value) -> (StatusCode, Value) {
        let mut fields = BTreeSet::new();
        leaves(&body, &mut Vec::new(), &mut fields);
        let identity = ["apiVersion", "kind", "metadata/name", "metadata/namespace"];
        fields.retain(|f| !identity.contains(&f.join("/").as_str()));
        let owners = self.owners.entry(path.into()).or_default();
        let taken: Vec<&Field> = owners
            .iter()
            .filter(|(m, _)| m.as_str() != manager)
            .flat_map(|(_, owned)| owned.intersection(&fields))
            .collect();
        if !force && !taken.is_empty() {
            return failure(StatusCode::CONFLICT, "Conflict", &format!("conflict with another manager over {taken:?}"));
        }
        let mut object = self.objects.get(path).cloned().unwrap_or_else(|| json!({}));
        let before = owners.get(manager).cloned().unwrap_or_default();
        for field in before.difference(&fields) {
            let kept = owners.iter().any(|(m, owned)| m != manager && owned.contains(field));
            if !kept {
                remove(&mut object, field);
            }
        }
        for (m, owned) in owners.iter_mut() {
            if m != manager {
                owned.retain(|f| !fields.contains(f));
            }
        }
        owners.insert(manager.into(), fields);
        owners.retain(|_, owned| !owned.is_empty());
        merge(&mut object, &body);
        let managed: Vec<Value> = owners
            .iter()
            .map(|(m, owned)| {
                let mut tree = json!({});
                for field in owned {
                    let mut at = &mut tree;
                    for key in field {
                        at = at
                            .as_object_mut()
                            .expect("a field tree is objects")
                            .entry(format!("f:{key}"))
                            .or_insert(json!({}));
                    }
                }
                json!({"manager": m, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": tree})
            })
            .collect();
        object["metadata"]["managedFields"] = Value::Array(managed);
        let created = !self.objects.contains_key(path);
        self.stamp(&mut object);
        self.objects.insert(path.into(), object.clone());
        (if created { StatusCode::CREATED } else { StatusCode::OK }, object)
    }

    fn stamp(&mut self, body: &mut Value) {
        self.version += 1;
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(self.version.to_string()));
        }
    }
}

/// The leaf fields of `value`: every path to a value that is not a non-empty object.
fn leaves(value: &Value, at: &mut Field, out: &mut BTreeSet<Field>) {
    match value {
        Value::Object(o) if !o.is_empty() => {
            for (k, v) in o {
                if at.as_slice() == ["metadata"] && k == "managedFields" {
                    continue;
                }
                at.push(k.clone());
                leaves(v, at, out);
                at.pop();
            }
        }
        _ => {
            out.insert(at.clone());
        }
    }
}

/// Removes `field` from `object`, and the objects it leaves empty.
fn remove(object: &mut Value, field: &[String]) {
    let Some((last, parents)) = field.split_last() else { return };
    let mut at = &mut *object;
    for key in parents {
        match at.get_mut(key) {
            Some(next) => at = next,
            None => return,
        }
    }
    if let Some(o) = at.as_object_mut() {
        o.remove(last);
    }
    if !parents.is_empty() && at.as_object().is_some_and(|o| o.is_empty()) {
        remove(object, parents);
    }
}

/// A JSON merge patch (RFC 7386): objects merge key by key, null removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn failure(status: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16(),
    });
    (status, body)
}
