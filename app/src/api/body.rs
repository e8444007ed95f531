//! Request bodies: JSON (an array for batches, an object for one), read field by field so that
//! every value of the wrong type is reported with its path, per item of a batch, and a batch
//! with any bad item changes nothing.

use kernel::FieldError;
use serde_json::{Map, Value};

use super::ApiError;
use super::problem::ItemErrors;

/// The most items one write takes (amoCRM: 250; complex leads: 50).
pub const MAX_BATCH: usize = 250;

/// The body as JSON, or a 400 saying why it is not.
pub fn json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("The request body is empty"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Malformed JSON: {e}")))?;
    // PostgreSQL text cannot hold NUL: refused here rather than failing in a query.
    if has_nul(&value) {
        return Err(ApiError::bad_request(
            "NUL characters (\\u0000) are not allowed",
        ));
    }
    Ok(value)
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A batch: a JSON array of objects, 1 to `max` of them.
pub fn batch(body: &[u8], max: usize) -> Result<Vec<Map<String, Value>>, ApiError> {
    let items = match json(body)? {
        Value::Array(items) => items,
        // One object where an array is expected: taken as a batch of one.
        Value::Object(o) => vec![Value::Object(o)],
        _ => {
            return Err(ApiError::bad_request(
                "The request body must be a JSON array",
            ));
        }
    };
    if items.is_empty() {
        return Err(ApiError::bad_request("The request body is an empty array"));
    }
    if items.len() > max {
        return Err(ApiError::bad_request(format!(
            "At most {max} items per request, not {}",
            items.len()
        )));
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(o) => out.push(o),
            _ => errors.push(ItemErrors {
                request_id: i.to_string(),
                errors: vec![FieldError {
                    field: String::new(),
                    code: "InvalidType".into(),
                    message: "This value should be of type object.".into(),
                }],
            }),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::batch(errors));
    }
    Ok(out)
}

/// One object: a PATCH of one entity.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match json(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request(
            "The request body must be a JSON object",
        )),
    }
}

/// Reads the fields of one object, collecting type errors with their paths.
pub struct Item<'a> {
    pub obj: &'a Map<String, Value>,
    prefix: String,
    pub errors: Vec<FieldError>,
}

fn type_error(path: String, ty: &str) -> FieldError {
    FieldError {
        field: path,
        code: "InvalidType".into(),
        message: format!("This value should be of type {ty}."),
    }
}

impl<'a> Item<'a> {
    pub fn new(obj: &'a Map<String, Value>) -> Item<'a> {
        Item {
            obj,
            prefix: String::new(),
            errors: Vec::new(),
        }
    }

    /// The item's `request_id` (a string or a number), else its position.
    pub fn request_id(&self, index: usize) -> String {
        match self.obj.get("request_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => index.to_string(),
        }
    }

    pub fn path(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    pub fn fail(&mut self, key: &str, code: &str, detail: impl Into<String>) {
        self.errors.push(FieldError {
            field: self.path(key),
            code: code.into(),
            message: detail.into(),
        });
    }

    pub fn has(&self, key: &str) -> bool {
        self.obj.get(key).is_some_and(|v| !v.is_null())
    }

    /// A whole number (a numeric string is accepted, as PHP clients send some).
    pub fn int(&mut self, key: &str) -> Option<i64> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Number(n) => match n.as_i64() {
                Some(v) => Some(v),
                None => {
                    self.errors.push(type_error(self.path(key), "int"));
                    None
                }
            },
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.errors.push(type_error(self.path(key), "int"));
                None
            }
        }
    }

    pub fn str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => {
                self.errors.push(type_error(self.path(key), "string"));
                None
            }
        }
    }

    pub fn bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Bool(b) => Some(*b),
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
                Some(n.as_i64() == Some(1))
            }
            _ => {
                self.errors.push(type_error(self.path(key), "bool"));
                None
            }
        }
    }

    pub fn array(&mut self, key: &str) -> Option<&'a Vec<Value>> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Array(a) => Some(a),
            _ => {
                self.errors.push(type_error(self.path(key), "array"));
                None
            }
        }
    }

    pub fn object(&mut self, key: &str) -> Option<&'a Map<String, Value>> {
        match self.obj.get(key)? {
            Value::Null => None,
            Value::Object(o) => Some(o),
            // PHP encodes an empty object as [].
            Value::Array(a) if a.is_empty() => None,
            _ => {
                self.errors.push(type_error(self.path(key), "object"));
                None
            }
        }
    }

    /// A nested object read with the same error list, its paths prefixed.
    pub fn nested<T>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
        read: impl FnOnce(&mut Item<'a>) -> T,
    ) -> T {
        let mut inner = Item {
            obj,
            prefix: self.path(key),
            errors: Vec::new(),
        };
        let out = read(&mut inner);
        self.errors.append(&mut inner.errors);
        out
    }

    /// Ids from `[{"id": 1}, …]` (or bare numbers).
    pub fn id_list(&mut self, key: &str) -> Option<Vec<i64>> {
        let list = self.array(key)?;
        let mut out = Vec::new();
        for (i, v) in list.iter().enumerate() {
            match v.get("id").unwrap_or(v).as_i64() {
                Some(id) => out.push(id),
                None => self
                    .errors
                    .push(type_error(format!("{}.{i}.id", self.path(key)), "int")),
            }
        }
        Some(out)
    }
}

/// Tag names from `[{"name": …}|{"id": …}]`, ids resolved against the known tags.
pub fn tag_names(item: &mut Item<'_>, key: &str, known: &[(i64, String)]) -> Option<Vec<String>> {
    let list = item.array(key)?;
    let mut out = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let path = format!("{key}.{i}");
        if let Some(name) = v.get("name").and_then(Value::as_str).or(v.as_str()) {
            out.push(name.to_string());
        } else if let Some(id) = v.get("id").and_then(Value::as_i64) {
            match known.iter().find(|(k, _)| *k == id) {
                Some((_, name)) => out.push(name.clone()),
                None => item.fail(&path, "NotFound", "No tag with this id"),
            }
        } else {
            item.fail(
                &path,
                "InvalidType",
                "A tag is {\"id\": …} or {\"name\": …}",
            );
        }
    }
    Some(out)
}
