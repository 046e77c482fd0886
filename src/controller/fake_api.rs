//! An in-memory Kubernetes API for offline tests of the I/O half: objects stored by path, a
//! resourceVersion per write, 409 on a stale write or on creating what exists, 404 on what is
//! missing, and a switch that takes the API down.
//! It knows nothing of any kind's semantics; the cluster tests stay the proof of those.

use std::collections::BTreeMap;
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

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Value>,
    version: u64,
    down: bool,
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

    async fn handle(&self, req: Request<Body>) -> Result<Response<Body>, std::io::Error> {
        let method = req.method().clone();
        let path = req.uri().path().trim_end_matches('/').to_string();
        let bytes = req.into_body().collect().await.map_err(std::io::Error::other)?.to_bytes();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let mut inner = self.inner.lock().expect("fake API lock");
        if inner.down {
            return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "the fake API is down"));
        }
        let (status, value) = inner.answer(&method, &path, body);
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
            _ => failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", path),
        }
    }

    fn stamp(&mut self, body: &mut Value) {
        self.version += 1;
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(self.version.to_string()));
        }
    }
}

fn failure(status: StatusCode, reason: &str, message: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": message, "reason": reason, "code": status.as_u16(),
    });
    (status, body)
}
