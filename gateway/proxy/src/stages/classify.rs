//! Which inference API a request is for: OpenAI's (chat, completions, embeddings, responses) or
//! Anthropic's Messages API.

use http::Method;
use sluice_metrics::Api;

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Inference(Api),
    Models,
}

pub fn run(method: &Method, path: &str) -> Result<Route, GatewayError> {
    let (route, allowed) = match path {
        "/v1/chat/completions" => (Route::Inference(Api::ChatCompletions), Method::POST),
        "/v1/completions" => (Route::Inference(Api::Completions), Method::POST),
        "/v1/embeddings" => (Route::Inference(Api::Embeddings), Method::POST),
        "/v1/responses" => (Route::Inference(Api::Responses), Method::POST),
        "/v1/messages" => (Route::Inference(Api::Messages), Method::POST),
        "/v1/models" => (Route::Models, Method::GET),
        _ => return Err(GatewayError::UnknownPath(path.chars().take(200).collect())),
    };
    if *method != allowed {
        return Err(GatewayError::MethodNotAllowed { method: method.to_string(), path: path.to_owned() });
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(run(&Method::POST, "/v1/chat/completions").unwrap(), Route::Inference(Api::ChatCompletions));
        assert_eq!(run(&Method::GET, "/v1/models").unwrap(), Route::Models);
        assert_eq!(run(&Method::POST, "/v1/responses").unwrap(), Route::Inference(Api::Responses));
        assert_eq!(run(&Method::POST, "/v1/messages").unwrap(), Route::Inference(Api::Messages));
        assert!(matches!(run(&Method::GET, "/v1/chat/completions"), Err(GatewayError::MethodNotAllowed { .. })));
        assert!(matches!(run(&Method::POST, "/v2/x"), Err(GatewayError::UnknownPath(_))));
    }
}
