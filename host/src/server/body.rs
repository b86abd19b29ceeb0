//! Request bodies, read only when a handler asks: after authentication, so a caller without a
//! valid token cannot make the hub read (or wait for) a body at all.

use super::limits::BodyLimit;
use super::reply::ApiError;
use crate::wire::http;
use futures_util::{Stream, StreamExt};
use serde_json::{Map, Value};
use std::pin::Pin;
use warp::Buf;

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

    /// Reads the whole body, refusing (413) one over `limit` as soon as it is: the rest is
    /// not read, and never held.
    pub async fn read(mut self, limit: BodyLimit) -> Result<Vec<u8>, ApiError> {
        let mut body = Vec::new();
        while let Some(chunk) = self.0.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::bad_request(format!("body could not be read: {e}")))?;
            if body.len() + chunk.len() > limit.bytes {
                return Err(ApiError::too_large("the body", limit.bytes, limit.flag));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads the whole body as a JSON object.
    pub async fn read_object(self, limit: BodyLimit) -> Result<Map<String, Value>, ApiError> {
        Ok(http::object(&self.read(limit).await?)?)
    }
}
