//! Messages as web readers receive them: one JSON object a message, framed as an SSE
//! event, a raw SSE event or an iframe `<script>` call.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::message::{Message, MessageProperties};

/// A message as JSON: `topic`, `payload` (or `payload_base64` when it is not UTF-8),
/// `qos`, `retain`, and the MQTT 5.0 properties a reader can use.
#[derive(Serialize)]
pub struct WebMessage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    topic: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
    qos: u8,
    retain: bool,
    #[serde(skip_serializing_if = "Map::is_empty")]
    properties: Map<String, Value>,
}

/// `message` as a JSON object; `retain` as the reader should see it, `id` for the
/// objects of a poll answer.
pub fn message_json(message: &Message, retain: bool, id: Option<u64>) -> WebMessage<'_> {
    let (payload, payload_base64) = text_or_base64(&message.payload);
    WebMessage {
        id: id.map(|id| id.to_string()),
        topic: message.topic.as_str(),
        payload,
        payload_base64,
        qos: message.qos as u8,
        retain,
        properties: message
            .properties
            .as_deref()
            .map(properties_json)
            .unwrap_or_default(),
    }
}

/// A value as compact JSON text.
pub fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn text_or_base64(bytes: &[u8]) -> (Option<&str>, Option<String>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Some(text), None),
        Err(_) => (None, Some(BASE64.encode(bytes))),
    }
}

/// Content type, response topic, correlation data and user properties (an object; a
/// key given more than once maps to the array of its values, in order).
fn properties_json(properties: &MessageProperties) -> Map<String, Value> {
    let mut json = Map::new();
    if let Some(content_type) = &properties.content_type {
        json.insert("content_type".into(), content_type.to_string().into());
    }
    if let Some(topic) = &properties.response_topic {
        json.insert("response_topic".into(), topic.to_string().into());
    }
    if let Some(data) = &properties.correlation_data {
        match text_or_base64(data) {
            (Some(text), _) => json.insert("correlation_data".into(), text.into()),
            (_, base64) => json.insert("correlation_data_base64".into(), base64.into()),
        };
    }
    if !properties.user_properties.is_empty() {
        let mut user = Map::new();
        for (key, value) in &properties.user_properties {
            let value = Value::from(value.to_string());
            match user.get_mut(&key[..]) {
                None => {
                    user.insert(key.to_string(), value);
                }
                Some(Value::Array(values)) => values.push(value),
                Some(single) => *single = Value::Array(vec![single.take(), value]),
            }
        }
        json.insert("user_properties".into(), Value::Object(user));
    }
    json
}

/// An SSE event with a JSON message as its data.
pub fn sse_message(id: u64, message: &Message, retain: bool) -> Bytes {
    let data = to_json(&message_json(message, retain, None));
    Bytes::from(format!("id: {id}\nevent: message\ndata: {data}\n\n"))
}

/// An SSE event of `format=raw`: the topic as the event name and the payload as data,
/// one `data:` line per line of it. A payload that is not UTF-8 is sent in base64,
/// after a `: base64` comment.
pub fn sse_raw(id: u64, message: &Message) -> Bytes {
    let mut event = format!("id: {id}\nevent: {}\n", single_line(message.topic.as_str()));
    match std::str::from_utf8(&message.payload) {
        Ok(text) => {
            // SSE ends a line at CR, LF or CRLF: each makes a data line of its own, so
            // no payload can start a field of its own.
            for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
                let _ = writeln!(event, "data: {line}");
            }
        }
        Err(_) => {
            let _ = writeln!(event, ": base64\ndata: {}", BASE64.encode(&message.payload));
        }
    }
    event.push('\n');
    Bytes::from(event)
}

/// `event: gap` with where the reader asked to resume and where the log begins.
pub fn sse_gap(from: u64, to: u64) -> Bytes {
    Bytes::from(format!(
        "id: {from}\nevent: gap\ndata: {{\"from\":{from},\"to\":{to}}}\n\n"
    ))
}

/// A field value on one line: CR and LF (possible in a topic) percent-encoded.
fn single_line(text: &str) -> String {
    text.replace('\r', "%0D").replace('\n', "%0A")
}

/// One message as the iframe stream sends it: `<script>parent.NAME({...})</script>`,
/// with `<` escaped inside the JSON so that no payload can end the script.
pub fn iframe_call(callback: &str, id: u64, message: &Message, retain: bool) -> Bytes {
    let json = to_json(&message_json(message, retain, Some(id)));
    let json = json
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    Bytes::from(format!("<script>parent.{callback}({json})</script>\n"))
}

/// Whether `name` may be called from the iframe stream: `[A-Za-z_$][A-Za-z0-9_$.]{0,63}`.
pub fn valid_callback(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$');
    first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;
    use crate::topic::TopicName;
    use bytestring::ByteString;

    fn message(topic: &'static str, payload: &'static [u8]) -> Message {
        Message {
            topic: TopicName::new(ByteString::from_static(topic)).unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: None,
            published_at: crate::message::Stamp::now(),
        }
    }

    #[test]
    fn callbacks_are_identifiers_only() {
        for ok in ["cb", "_x", "$", "app.on_message", "a".repeat(64).as_str()] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "a(b)",
            "alert(1)//",
            "a b",
            "é",
            "a".repeat(65).as_str(),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn raw_events_keep_lines_and_topics_on_their_lines() {
        let event = sse_raw(7, &message("a\nb", b"one\r\ntwo"));
        assert_eq!(&event[..], b"id: 7\nevent: a%0Ab\ndata: one\ndata: two\n\n");
        let forged = sse_raw(9, &message("t", b"x\r\rid: 99\revent: message\rdata: fake"));
        assert_eq!(
            &forged[..],
            b"id: 9\nevent: t\ndata: x\ndata: \ndata: id: 99\ndata: event: message\ndata: data: fake\n\n"
        );
        let binary = sse_raw(8, &message("t", b"\xff\x00"));
        assert_eq!(&binary[..], b"id: 8\nevent: t\n: base64\ndata: /wA=\n\n");
    }

    #[test]
    fn iframe_calls_cannot_close_the_script() {
        let call = iframe_call("cb", 1, &message("t", b"</script><b>"), false);
        let text = std::str::from_utf8(&call).unwrap();
        assert_eq!(text.matches("</script>").count(), 1, "{text}");
        assert!(text.contains("\\u003c/script>"), "{text}");
    }
}
