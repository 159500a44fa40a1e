//! Extractors that reject bad input in Qdrant's envelope with a message that says what
//! is wrong: malformed or mistyped JSON bodies, query strings and path parameters
//! all answer 400 `{"status": {"error": ...}}` instead of axum's plain-text rejections.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::envelope::error_response;

/// A JSON body; a missing body counts as `{}` so that bodiless POSTs still work.
pub struct Json<T>(pub T);

/// Query parameters.
pub struct Query<T>(pub T);

/// Path parameters.
pub struct Path<T>(pub T);

/// A rejected request part.
pub struct Rejection(String);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        error_response(StatusCode::BAD_REQUEST, &self.0)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = Rejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Rejection(format!("Format error in JSON body: {}", e.body_text())))?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let value = serde_path_to_error::deserialize(&mut deserializer)
            .map_err(|e| Rejection(format!("Format error in JSON body: {}", describe(&e))))?;
        deserializer
            .end()
            .map_err(|e| Rejection(format!("Format error in JSON body: {e}")))?;
        Ok(Json(value))
    }
}

fn describe(err: &serde_path_to_error::Error<serde_json::Error>) -> String {
    let path = err.path().to_string();
    if path == "." || path.is_empty() {
        err.inner().to_string()
    } else {
        format!("{path}: {}", err.inner())
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                Rejection(format!(
                    "Deserialize error in query parameters: {}",
                    e.body_text()
                ))
            })
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| {
                Rejection(format!(
                    "Deserialize error in path parameters: {}",
                    e.body_text()
                ))
            })
    }
}

/// `?wait=` (default true, as in Qdrant).
#[derive(Debug, Deserialize)]
pub struct WaitParam {
    #[serde(default = "default_true")]
    pub wait: bool,
}

pub fn default_true() -> bool {
    true
}
