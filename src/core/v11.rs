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

    /// The request a WebSocket frame holds, read as [`Request::from_value`] reads the frame's
    /// value, without building the value's top-level map (its keys are read only to be taken out
    /// again). An error when the bytes are not JSON.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Request> {
        serde_json::from_slice(bytes)
    }

    /// Reads a request from bytes, pre-scanned ([`scan::ScanLimits::PEER`]): a document too costly
    /// to decode is refused unread (answer it with [`Response::refused`]); one that is not JSON is
    /// the empty action. Transports that share the parse budget read with
    /// [`crate::decode::json`] instead.
    pub fn from_slice(bytes: &[u8]) -> Result<Request, scan::Refused> {
        scan::scan_json(bytes, scan::ScanLimits::PEER)?;
        Ok(Request::from_json(bytes).unwrap_or_default())
    }
}

/// The last value of each field [`Request::from_value`] takes; what is not a request's reads as
/// the empty one, as there.
impl<'de> serde::Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Request, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, Visitor};

        struct RequestVisitor;
        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = Request;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON document")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Request, A::Error> {
                let (mut action, mut params, mut echo) = (None, None, None);
                while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "action" => action = Some(access.next_value::<Value>()?),
                        "params" => params = Some(access.next_value::<Value>()?),
                        "echo" => echo = Some(access.next_value::<Value>()?),
                        _ => {
                            access.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Request {
                    action: match action {
                        Some(Value::String(s)) => s,
                        _ => String::new(),
                    },
                    params: match params {
                        Some(Value::Object(p)) => p,
                        _ => Map::new(),
                    },
                    echo,
                })
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Request, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Request::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Request, E> {
                Ok(Request::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Request, E> {
                Ok(Request::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Request, E> {
                Ok(Request::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Request, E> {
                Ok(Request::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Request, E> {
                Ok(Request::default())
            }
            fn visit_unit<E>(self) -> Result<Request, E> {
                Ok(Request::default())
            }
        }
        d.deserialize_any(RequestVisitor)
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

    /// Its JSON, as `serde_json` writes it ([`crate::core::write_json`]: a long message in `data`,
    /// a `get_msg`'s, is copied rather than escaped byte by byte).
    pub fn to_json(&self) -> String {
        use crate::core::write_json::{string, value};
        let mut out = String::with_capacity(96);
        out.push_str("{\"status\":");
        string(&mut out, self.status);
        out.push_str(",\"retcode\":");
        out.push_str(itoa::Buffer::new().format(self.retcode));
        out.push_str(",\"data\":");
        value(&mut out, &self.data);
        out.push_str(",\"message\":");
        string(&mut out, &self.message);
        for (name, text) in [("msg", &self.msg), ("wording", &self.wording)] {
            if let Some(text) = text {
                out.push_str(",\"");
                out.push_str(name);
                out.push_str("\":");
                string(&mut out, text);
            }
        }
        if let Some(echo) = &self.echo {
            out.push_str(",\"echo\":");
            value(&mut out, echo);
        }
        out.push('}');
        out
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
    fn an_answer_is_written_as_serde_json_writes_it() {
        let text = "今天 [x] & \"y\"\n".repeat(40);
        let answers = [
            Response::ok(json!({"message_id": -5, "message": text, "time": 1.5})),
            Response::ok(Value::Null).with_echo(Some(json!({"n": [1, "two"]}))),
            Response::failed(100, "BAD \"PARAM\"", "no `group_id`").with_echo(Some(json!("e1"))),
        ];
        for r in answers {
            assert_eq!(r.to_json(), serde_json::to_string(&r).unwrap());
        }
    }

    /// A request read straight from its text is the request its value reads as, whatever the
    /// document holds.
    #[test]
    fn a_request_reads_from_its_text_as_from_its_value() {
        let texts = [
            r#"{"action":"send_group_msg","params":{"group_id":5,"message":"hi"},"echo":"e1"}"#,
            r#"{"echo":{"seq":[1,2]},"params":{"a":{"b":[null]}},"action":"x","extra":[1,{"k":2}]}"#,
            r#"{"action":5,"params":[1],"echo":null}"#,
            r#"{"action":"a","action":"b","params":{"x":1},"params":"no","echo":1,"echo":2}"#,
            r#"{"act\u0069on":"escaped key","params":{"k\"":"\u00e9"}}"#,
            r#"{}"#,
            r#"[1,{"action":"x"}]"#,
            r#""text""#,
            r#"3"#,
            r#"null"#,
            r#"true"#,
        ];
        for text in texts {
            let typed = Request::from_json(text.as_bytes()).unwrap();
            let from_value = Request::from_value(serde_json::from_str(text).unwrap());
            assert_eq!(typed, from_value, "{text}");
        }
        assert!(Request::from_json(b"{\"action\":").is_err());
    }

    #[test]
    fn failure_has_go_cqhttp_shape_and_keeps_echo() {
        let r = Response::not_found().with_echo(Some(json!({"seq": 3})));
        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
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
