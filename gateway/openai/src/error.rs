//! The OpenAI error body: `{"error":{"message","type","param","code"}}`.

use serde::{Deserialize, Serialize};

/// The JSON body of every error Sluice returns, in the shape OpenAI SDKs understand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>, kind: &str, param: Option<&str>, code: Option<&str>) -> Self {
        Self {
            error: ErrorDetail {
                message: message.into(),
                kind: kind.to_owned(),
                param: param.map(str::to_owned),
                code: code.map(str::to_owned),
            },
        }
    }

    /// Serialises to JSON bytes. Serialising this struct cannot fail (string fields only), so the
    /// fallback exists only to keep the signature infallible.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#.to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_in_openai_shape() {
        let body = ErrorBody::new("no such model", "invalid_request_error", Some("model"), Some("model_not_found"));
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"message": "no such model", "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})
        );
    }

    #[test]
    fn absent_param_and_code_are_null_not_missing() {
        let v: serde_json::Value =
            serde_json::from_slice(&ErrorBody::new("x", "server_error", None, None).to_json()).unwrap();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert!(v["error"]["code"].is_null());
    }
}
