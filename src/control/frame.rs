//! Control-channel frames: JSON-RPC 2.0 objects, one per `\n`-terminated line, at most
//! 1 MiB. corrald sends requests; a service sends responses (with the request's `id`) and
//! notifications (no `id`). Anything else is a malformed frame: logged and dropped by the
//! caller, never fatal.

use serde_json::{Value, json};

/// The longest frame, newline included.
pub const MAX_FRAME: usize = 1 << 20;

/// A frame from the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The answer to request `id`: its `result`, or its `error` message.
    Response {
        id: u64,
        outcome: Result<Value, String>,
    },
    /// An unsolicited message, e.g. `upcall.invalidate`.
    Notification { method: String, params: Value },
}

/// Why a frame was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("not a JSON-RPC 2.0 object (needs \"jsonrpc\": \"2.0\")")]
    NotJsonRpc,
    #[error("wrong shape: {0}")]
    Shape(String),
    #[error("longer than {MAX_FRAME} bytes")]
    TooLong,
}

/// The request line for `method` with string `params`.
pub fn request(id: u64, method: &str, params: &[String]) -> String {
    let mut line =
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
    line.push('\n');
    line
}

/// Parses one line (without its newline).
pub fn parse(line: &[u8]) -> Result<Incoming, FrameError> {
    let value: Value =
        serde_json::from_slice(line).map_err(|e| FrameError::NotJson(e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(FrameError::NotJsonRpc);
    };
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(FrameError::NotJsonRpc);
    }
    match (object.get("id"), object.get("method")) {
        (Some(id), None) => {
            let id = id.as_u64().ok_or_else(|| {
                FrameError::Shape(format!("response id {id} is not one of our request ids"))
            })?;
            let outcome = match (object.get("result"), object.get("error")) {
                (Some(result), None) => Ok(result.clone()),
                (None, Some(error)) => Err(error_message(error)),
                _ => {
                    return Err(FrameError::Shape(
                        "a response needs exactly one of result and error".into(),
                    ));
                }
            };
            Ok(Incoming::Response { id, outcome })
        }
        (None, Some(Value::String(method))) => Ok(Incoming::Notification {
            method: method.clone(),
            params: object.get("params").cloned().unwrap_or(Value::Null),
        }),
        (None, Some(_)) => Err(FrameError::Shape("method is not a string".into())),
        (Some(_), Some(_)) => Err(FrameError::Shape(
            "requests from the service are not supported".into(),
        )),
        (None, None) => Err(FrameError::Shape(
            "neither a response (id) nor a notification (method)".into(),
        )),
    }
}

/// The text of a JSON-RPC error object: its message, with the code when there is one.
fn error_message(error: &Value) -> String {
    let message = error.get("message").and_then(Value::as_str);
    match (message, error.get("code").and_then(Value::as_i64)) {
        (Some(message), Some(code)) => format!("{message} (code {code})"),
        (Some(message), None) => message.to_owned(),
        _ => error.to_string(),
    }
}

/// A method result as `Call` returns it: a string as is, anything else as its JSON text.
pub fn result_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_line() {
        assert_eq!(
            request(7, "exports.refresh", &["a".into()]),
            "{\"id\":7,\"jsonrpc\":\"2.0\",\"method\":\"exports.refresh\",\"params\":[\"a\"]}\n"
        );
    }

    #[test]
    fn parses_responses_and_notifications() {
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","id":7,"result":"ok"}"#),
            Ok(Incoming::Response {
                id: 7,
                outcome: Ok(json!("ok"))
            })
        );
        assert_eq!(
            parse(
                br#"{"jsonrpc":"2.0","id":8,"error":{"code":-32000,"message":"no such export"}}"#
            ),
            Ok(Incoming::Response {
                id: 8,
                outcome: Err("no such export (code -32000)".into())
            })
        );
        assert_eq!(
            parse(br#"{"jsonrpc":"2.0","method":"upcall.invalidate","params":{"resource":"/x","attrs":["mtime"]}}"#),
            Ok(Incoming::Notification {
                method: "upcall.invalidate".into(),
                params: json!({"resource": "/x", "attrs": ["mtime"]}),
            })
        );
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(matches!(parse(b"not json"), Err(FrameError::NotJson(_))));
        assert_eq!(parse(b"[1,2]"), Err(FrameError::NotJsonRpc));
        assert_eq!(
            parse(br#"{"id":1,"result":1}"#),
            Err(FrameError::NotJsonRpc)
        );
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":"x","result":1}"#),
            Err(FrameError::Shape(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1}"#),
            Err(FrameError::Shape(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0","id":1,"method":"m"}"#),
            Err(FrameError::Shape(_))
        ));
        assert!(matches!(
            parse(br#"{"jsonrpc":"2.0"}"#),
            Err(FrameError::Shape(_))
        ));
    }

    #[test]
    fn results_render_as_text() {
        assert_eq!(result_text(&json!("plain")), "plain");
        assert_eq!(result_text(&json!({"a": 1})), "{\"a\":1}");
        assert_eq!(result_text(&json!(null)), "null");
    }
}
