//! What `flotilla render` prints: the children, and the Secrets the operator makes at run time
//! with placeholders instead of credentials.

use super::{World, check, children, database};
use crate::api::Microservice;
use crate::validate::Invalid;

/// What `flotilla render` prints for `ms`: its children plus, with a database, the Secrets the
/// operator makes at run time, with placeholders instead of credentials.
pub fn preview(ms: &Microservice, world: &World) -> Result<Vec<serde_json::Value>, Invalid> {
    let checked = check(ms, world)?;
    let input = checked.input();
    let children = children(&checked);
    let mut values = children.to_values().unwrap_or_default();
    if let Some(Ok(db)) = &children.database {
        let credentials = database::credentials_secret(input, db.engine, database::PLACEHOLDER);
        let embedded =
            db.stateful_set.as_ref().and_then(|_| database::embedded_connection(input, db.engine, &credentials));
        let placeholder = if let Some(mut conn) = embedded {
            // The URI as the operator writes it, with the placeholder readable.
            conn.uri = Some(database::readable_uri(&conn, db.engine));
            conn
        } else {
            database::Connection {
                host: PLACEHOLDER_OR_HOST.into(),
                port: PLACEHOLDER_OR_HOST.into(),
                username: PLACEHOLDER_OR_HOST.into(),
                password: PLACEHOLDER_OR_HOST.into(),
                database: PLACEHOLDER_OR_HOST.into(),
                uri: Some(PLACEHOLDER_OR_HOST.into()),
            }
        };
        let mut secrets = Vec::new();
        if db.stateful_set.is_some() {
            secrets.push(credentials);
        }
        secrets.push(database::binding_secret(input, db.engine, &database::provider(db), &placeholder));
        for mut s in secrets {
            // Show the placeholders readably rather than base64-encoded.
            s.string_data = s
                .data
                .take()
                .map(|d| d.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect());
            if let Ok(v) = serde_json::to_value(&s) {
                values.push(v);
            }
        }
    }
    Ok(values)
}

const PLACEHOLDER_OR_HOST: &str = "<from the provisioner>";
