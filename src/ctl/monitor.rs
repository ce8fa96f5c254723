//! `corralctl monitor`: every signal corrald sends, one line each — readable text, or JSON
//! objects for scripts (`{"signal": …, "path": …, "args": […]}`).

use futures_util::StreamExt;
use serde_json::{Value, json};
use zbus::message::Type as MessageType;
use zbus::{Connection, MatchRule, Message, MessageStream, Variant};

use crate::names::BUS_NAME;

/// Prints signals until the connection closes.
pub async fn run(connection: &Connection, as_json: bool) -> zbus::Result<()> {
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(BUS_NAME)
        .build()?;
    let mut stream = MessageStream::for_match_rule(rule, connection, None).await?;
    while let Some(message) = stream.next().await {
        let message = message?;
        let line = render(&message, as_json);
        println!("{line}");
    }
    Ok(())
}

/// One signal as a line.
pub fn render(message: &Message, as_json: bool) -> String {
    let header = message.header();
    let member = header.member().map(|m| m.to_string()).unwrap_or_default();
    let path = header.path().map(|p| p.to_string()).unwrap_or_default();
    let args: Vec<Value> = match message.body().deserialize::<zbus::wire::Structure<'_>>() {
        Ok(body) => body.fields().iter().map(to_json).collect(),
        Err(_) => Vec::new(),
    };
    if as_json {
        return json!({ "signal": member, "path": path, "args": args }).to_string();
    }
    let shown: Vec<String> = args
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    if member == "PropertiesChanged" {
        // PropertiesChanged(interface, changed, invalidated): the path says which service.
        format!(
            "{member} {path} {}",
            shown.get(1).cloned().unwrap_or_default()
        )
    } else {
        format!("{member} {}", shown.join(" "))
    }
}

/// A D-Bus value as JSON: numbers, strings, arrays, and dictionaries as objects.
pub fn to_json(value: &Variant<'_>) -> Value {
    match value {
        Variant::U8(v) => json!(v),
        Variant::Bool(v) => json!(v),
        Variant::I16(v) => json!(v),
        Variant::U16(v) => json!(v),
        Variant::I32(v) => json!(v),
        Variant::U32(v) => json!(v),
        Variant::I64(v) => json!(v),
        Variant::U64(v) => json!(v),
        Variant::F64(v) => json!(v),
        Variant::Str(s) => json!(s.as_str()),
        Variant::Signature(s) => json!(s.to_string()),
        Variant::ObjectPath(p) => json!(p.as_str()),
        Variant::Variant(inner) => to_json(inner),
        Variant::Array(array) => Value::Array(array.inner().iter().map(to_json).collect()),
        Variant::Dict(dict) => {
            let map = dict
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k) {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect();
            Value::Object(map)
        }
        Variant::Structure(s) => Value::Array(s.fields().iter().map(to_json).collect()),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}
