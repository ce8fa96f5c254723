//! `bus_label`: escaping service names into D-Bus object-path labels, and back.
//!
//! The input is used both as a name and as a label. What must hold: every escaped label is
//! a valid object-path element (so `service_path` is a valid object path) and unescapes to
//! the name; and `unescape_label` is the exact inverse, accepting only the labels that
//! `escape_label` makes, so no two paths can name one service.

use corral::names::{escape_label, service_path, unescape_label};
use zbus::ObjectPath;

pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let label = escape_label(&text);
    assert!(
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "{text:?} escaped to {label:?}, which is no object-path element"
    );
    let path = service_path(&text);
    assert!(
        ObjectPath::try_from(path.as_str()).is_ok(),
        "{path:?} is not a valid object path"
    );
    assert_eq!(unescape_label(&label).as_deref(), Some(&*text));

    if let Some(name) = unescape_label(&text) {
        assert_eq!(
            escape_label(&name),
            text,
            "{text:?} unescaped to {name:?}, which escapes to another label"
        );
    }
}
