//! OneBot v11 action requests and responses in go-cqhttp's shape.
//!
//! Responses follow `coolq.OK` / `coolq.Failed`: success carries `message: ""`; failure carries
//! `msg` (machine string), `wording` (human text) and `message` (= wording). `echo` is returned
//! exactly as the bot sent it, whatever its JSON type.

use serde::Serialize;
use serde_json::{Map, Value};

use super::scan;

/// A v11 action request after it has been read off any transport.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub action: String,
    pub params: Map<String, Value>,
    pub echo: Option<Value>,
}

impl Request {
    /// Reads `{action, params, echo}`. Anything unreadable becomes the empty action, which answers
    /// `404 API_NOT_FOUND` as go-cqhttp does, keeping whatever `echo` could be found.
    pub fn from_value(value: Value) -> Request {
        let Value::Object(mut map) = value else { return Request::default() };
        let echo = map.remove("echo");
        let action = match map.remove("action") {
            Some(Value::String(s)) => s,
            _ => String::new(),
        };
        let params = match map.remove("params") {
            Some(Value::Object(p)) => p,
            _ => Map::new(),
        };
        Request { action, params, echo }
    }

    /// Reads a request from bytes, pre-scanned ([`scan::ScanLimits::PEER`]): a document too costly
    /// to decode is refused unread (answer it with [`Response::refused`]); one that is not JSON is
    /// the empty action. Transports that share the parse budget decode first and use
    /// [`Request::from_value`].
    pub fn from_slice(bytes: &[u8]) -> Result<Request, scan::Refused> {
        scan::scan_json(bytes, scan::ScanLimits::PEER)?;
        Ok(serde_json::from_slice(bytes).map(Request::from_value).unwrap_or_default())
    }
}

/// A v11 action response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    pub status: &'static str,
    pub retcode: i64,
    pub data: Value,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wording: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<Value>,
}

impl Response {
    pub fn ok(data: Value) -> Self {
        Response { status: "ok", retcode: 0, data, message: String::new(), msg: None, wording: None, echo: None }
    }

    pub fn failed(retcode: i64, msg: impl Into<String>, wording: impl Into<String>) -> Self {
        let wording = wording.into();
        Response {
            status: "failed",
            retcode,
            data: Value::Null,
            message: wording.clone(),
            msg: Some(msg.into()),
            wording: Some(wording),
            echo: None,
        }
    }

    /// The answer to a request the bridge would not decode: too many values, nested too deeply,
    /// or no parse budget free in time (`docs/limits.md`). Its `echo` is unknown.
    pub fn refused(wording: impl std::fmt::Display) -> Self {
        Response::failed(100, "REQUEST_TOO_COMPLEX", format!("the request was not read: {wording}"))
    }

    /// go-cqhttp's answer to an action it does not know.
    pub fn not_found() -> Self {
        Response::failed(404, "API_NOT_FOUND", "API不存在")
    }

    pub fn with_echo(mut self, echo: Option<Value>) -> Self {
        self.echo = echo;
        self
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain maps, strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The message format of an endpoint (go-cqhttp `message.post-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostFormat {
    #[default]
    String,
    Array,
}

impl std::str::FromStr for PostFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "string" => Ok(PostFormat::String),
            "array" => Ok(PostFormat::Array),
            other => Err(format!("post format must be `string` or `array`, not {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn failure_has_go_cqhttp_shape_and_keeps_echo() {
        let r = Response::not_found().with_echo(Some(json!({"seq": 3})));
        let v: Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"status":"failed","retcode":404,"data":null,"message":"API不存在","msg":"API_NOT_FOUND","wording":"API不存在","echo":{"seq":3}})
        );
    }

    #[test]
    fn unreadable_requests_become_the_empty_action() {
        assert_eq!(Request::from_slice(b"{not json").unwrap().action, "");
        let r = Request::from_slice(br#"{"action":"x","params":5,"echo":7}"#).unwrap();
        assert_eq!((r.action.as_str(), r.params.len(), r.echo), ("x", 0, Some(json!(7))));
    }

    #[test]
    fn requests_too_costly_to_decode_are_refused_with_a_reason() {
        let zeros = format!("{{\"action\":\"x\",\"params\":{{\"a\":[{}0]}}}}", "0,".repeat(1 << 19));
        let refused = Request::from_slice(zeros.as_bytes()).unwrap_err();
        let answer = Response::refused(refused);
        assert_eq!((answer.retcode, answer.msg.as_deref()), (100, Some("REQUEST_TOO_COMPLEX")));
        assert!(answer.wording.unwrap().contains("more than 524288 values"));
    }
}
