//! Extractors whose rejections are [`ApiError`]s in the API's JSON shape, naming the field that
//! did not parse (axum's own answer with plain-text bodies and no field).

use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON object as the request body; `Content-Type: application/json` is required.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| body_error(e.status(), e.body_text()))?;
        parse_json(&headers, &bytes, Shape::Object).map(JsonBody)
    }
}

/// A JSON list of objects as the request body.
pub struct JsonList<T>(pub Vec<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonList<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| body_error(e.status(), e.body_text()))?;
        parse_json(&headers, &bytes, Shape::ListOfObjects).map(JsonList)
    }
}

/// An optional JSON body: an empty one (or `null`) means `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| body_error(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json::<Option<T>>(&headers, &bytes, Shape::ObjectOrNull)
            .map(|body| OptionalJsonBody(body.unwrap_or_default()))
    }
}

pub(crate) fn body_error(status: http::StatusCode, text: String) -> ApiError {
    if status == http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", "the request body is too large")
    } else {
        ApiError::bad_request("invalid_body", format!("cannot read the request body: {text}"))
    }
}

/// What the top of a body must be. serde would also build a struct from a JSON array of its
/// fields' values (`[null, null]`), which no client means; the shape is checked first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    ObjectOrNull,
    ListOfObjects,
}

fn check_shape(value: &serde_json::Value, shape: Shape) -> Result<(), ApiError> {
    let not = |what: &str| ApiError::bad_request("invalid_json", format!("the body must be {what}"));
    match (shape, value) {
        (Shape::Object | Shape::ObjectOrNull, serde_json::Value::Object(_)) => Ok(()),
        (Shape::ObjectOrNull, serde_json::Value::Null) => Ok(()),
        (Shape::Object | Shape::ObjectOrNull, _) => Err(not("a JSON object")),
        (Shape::ListOfObjects, serde_json::Value::Array(items)) => {
            match items.iter().position(|item| !item.is_object()) {
                Some(i) => Err(ApiError::bad_request("invalid_json", format!("[{i}]: must be a JSON object"))
                    .with_param(format!("[{i}]"))),
                None => Ok(()),
            }
        }
        (Shape::ListOfObjects, _) => Err(not("a JSON list of objects")),
    }
}

fn parse_json<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8], shape: Shape) -> Result<T, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::bad_request(
            "unsupported_content_type",
            "send the body as Content-Type: application/json",
        )
        .with_param("Content-Type"));
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}")))?;
    check_shape(&value, shape)?;
    integral_floats_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            ApiError::bad_request("invalid_json", format!("the body does not fit this route: {inner}"))
        } else {
            ApiError::bad_request("invalid_json", format!("{path}: {inner}")).with_param(path)
        }
    })
}

/// `3.0` is an integer as far as JSON (and JSON Schema) is concerned; serde's integer fields
/// would refuse it.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0) {
                if ((i64::MIN as f64)..(i64::MAX as f64)).contains(&f) {
                    *value = Value::from(f as i64);
                } else if (0.0..(u64::MAX as f64)).contains(&f) {
                    *value = Value::from(f as u64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Path parameters; a value that does not parse (a non-numeric id) is a 400 naming it.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        let rejection = match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => return Ok(PathParams(value)),
            Err(rejection) => rejection,
        };
        let index = match &rejection {
            PathRejection::FailedToDeserializePathParams(e) => match e.kind() {
                ErrorKind::ParseErrorAtIndex { index, .. } => Some(*index),
                ErrorKind::ParseError { .. } => Some(0),
                _ => None,
            },
            _ => None,
        };
        let key = match (index, RawPathParams::from_request_parts(parts, state).await) {
            (Some(index), Ok(raw)) => raw.iter().nth(index).map(|(key, _)| key.to_owned()),
            _ => None,
        };
        Err(match key {
            Some(key) => {
                ApiError::bad_request("invalid_path", format!("{key}: {}", rejection.body_text())).with_param(key)
            }
            None => ApiError::bad_request("invalid_path", rejection.body_text()),
        })
    }
}

/// Query parameters; a value that does not parse is a 400 naming it when serde says which.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only deserialised")]
    struct Body {
        limits: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code, reason = "only deserialised")]
    struct Inner {
        rpm: Option<u64>,
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        h
    }

    #[test]
    fn names_the_field_that_does_not_parse() {
        let e = parse_json::<Body>(&json_headers(), br#"{"limits":{"rpm":"many"}}"#, Shape::Object).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limits.rpm"));
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        let e = parse_json::<Body>(&json_headers(), b"{not json", Shape::Object).unwrap_err();
        assert_eq!(e.param, None);
        let e = parse_json::<Body>(&json_headers(), br#"{"limits":{}} trailing"#, Shape::Object).unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse_json::<Body>(&json_headers(), br#"{"limits":{},"extra":1}"#, Shape::Object).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("extra"));
    }

    #[test]
    fn structs_come_from_objects_only() {
        let e = parse_json::<Body>(&json_headers(), br#"[{"rpm":1}]"#, Shape::Object).unwrap_err();
        assert_eq!(e.status, http::StatusCode::BAD_REQUEST);
        let e = parse_json::<Vec<Inner>>(&json_headers(), br#"[{"rpm":1},[2]]"#, Shape::ListOfObjects).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("[1]"));
        assert!(parse_json::<Option<Inner>>(&json_headers(), b"null", Shape::ObjectOrNull).unwrap().is_none());
    }

    #[test]
    fn integral_floats_are_integers() {
        let body = parse_json::<Body>(&json_headers(), br#"{"limits":{"rpm":60.0}}"#, Shape::Object).unwrap();
        assert_eq!(body.limits.rpm, Some(60));
        let e = parse_json::<Body>(&json_headers(), br#"{"limits":{"rpm":60.5}}"#, Shape::Object).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("limits.rpm"));
    }

    #[test]
    fn wants_json_content_type() {
        let e = parse_json::<Body>(&HeaderMap::new(), br#"{"limits":{}}"#, Shape::Object).unwrap_err();
        assert_eq!(e.code, "unsupported_content_type");
        assert!(parse_json::<Body>(&json_headers(), br#"{"limits":{}}"#, Shape::Object).is_ok());
    }
}
