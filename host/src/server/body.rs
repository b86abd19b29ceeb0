//! Request bodies, read only when a handler asks: after authentication, so a caller without a
//! valid token cannot make the hub read (or wait for) a body at all.

use super::reply::ApiError;
use crate::wire::http;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use std::pin::Pin;
use warp::http::StatusCode;
use warp::Buf;

/// Largest HTTP body accepted: a batch of tasks or an uploaded policy component.
const MAX_BODY_BYTES: usize = 32 << 20;

/// A request body not read yet.
pub struct LazyBody(Pin<Box<dyn Stream<Item = Result<Vec<u8>, warp::Error>> + Send>>);

impl LazyBody {
    /// Wraps warp's body stream without reading from it.
    pub fn new<S, B>(stream: S) -> LazyBody
    where
        S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
        B: Buf,
    {
        LazyBody(Box::pin(stream.map(|chunk| {
            chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()).to_vec())
        })))
    }

    /// Reads the whole body, refusing one over the size limit.
    pub async fn read(mut self) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.0.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("body could not be read: {e}")))?;
            body.extend_from_slice(&chunk);
            if body.len() > MAX_BODY_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body is larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
        }
        Ok(body)
    }

    /// Reads the whole body as a JSON object.
    pub async fn read_object(self) -> Result<Map<String, Value>, ApiError> {
        Ok(http::object(&self.read().await?)?)
    }
}
