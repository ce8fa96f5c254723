//! The names of DESIGN.md "Names": bus name, object paths, error prefix, and the escaping
//! of a service name into an object-path label.

/// The well-known bus name corrald owns.
pub const BUS_NAME: &str = "org.corral.Corral1";
/// The manager object (Manager, Upcall and ObjectManager interfaces).
pub const MANAGER_PATH: &str = "/org/corral/Corral1";
/// Parent of every service object.
pub const SERVICE_PATH_PREFIX: &str = "/org/corral/Corral1/service/";
pub const MANAGER_INTERFACE: &str = "org.corral.Corral1.Manager";
pub const SERVICE_INTERFACE: &str = "org.corral.Corral1.Service";
pub const UPCALL_INTERFACE: &str = "org.corral.Corral1.Upcall";
/// Prefix of every corral D-Bus error name.
pub const ERROR_PREFIX: &str = "org.corral.Corral1.Error";
/// The longest service, group, method or recipe name.
pub const MAX_NAME_LEN: usize = 64;

/// Escapes `name` into an object-path label the way systemd escapes bus labels:
/// `[A-Za-z0-9]` stays, every other byte becomes `_` and two lowercase hex digits, and the
/// empty string becomes `_`.
pub fn escape_label(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut label = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() {
            label.push(byte as char);
        } else {
            label.push_str(&format!("_{byte:02x}"));
        }
    }
    label
}

/// Reverses [`escape_label`]; `None` when `label` is not a label `escape_label` makes. Only
/// its own spelling is accepted (not `""`, not `_41` for `A`), so a name has one label and
/// no two object paths can name one service.
pub fn unescape_label(label: &str) -> Option<String> {
    match label {
        "_" => return Some(String::new()),
        // No object-path element is empty; the empty name is `_`.
        "" => return None,
        _ => {}
    }
    let bytes = label.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = label.get(i + 1..i + 3)?;
                if !hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return None;
                }
                let byte = u8::from_str_radix(hex, 16).ok()?;
                if byte.is_ascii_alphanumeric() {
                    return None;
                }
                out.push(byte);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// The object path of the service called `name`.
pub fn service_path(name: &str) -> String {
    format!("{SERVICE_PATH_PREFIX}{}", escape_label(name))
}

/// Whether `name` may name a service, group, method or recipe: `[A-Za-z0-9_.@-]{1,64}`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_systemd() {
        assert_eq!(escape_label("nfs-ganesha"), "nfs_2dganesha");
        assert_eq!(escape_label("a.b@c_d"), "a_2eb_40c_5fd");
        assert_eq!(escape_label(""), "_");
        assert_eq!(escape_label("Abc09"), "Abc09");
        assert_eq!(service_path("nfs"), "/org/corral/Corral1/service/nfs");
    }

    #[test]
    fn unescape_reverses_escape() {
        for name in ["nfs-ganesha", "", "x", "a.b@c_d", "UPPER-lower.9"] {
            assert_eq!(unescape_label(&escape_label(name)).as_deref(), Some(name));
        }
        assert_eq!(unescape_label("bad-label"), None);
        assert_eq!(unescape_label("_2"), None);
        assert_eq!(unescape_label("_ZZ"), None);
    }

    #[test]
    fn unescape_refuses_labels_escape_never_makes() {
        // Found by the bus_label fuzz target: "" and "_41" unescaped to "" and "A", whose
        // labels are "_" and "A", so two object paths could stand for one service.
        assert_eq!(unescape_label(""), None);
        assert_eq!(unescape_label("_41"), None);
        assert_eq!(unescape_label("a_30"), None);
        assert_eq!(unescape_label("_5f_2d"), Some("_-".to_owned()));
    }

    #[test]
    fn name_rules() {
        assert!(is_valid_name("nfs"));
        assert!(is_valid_name("getty@tty1"));
        assert!(is_valid_name("a.b_c-d"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("has space"));
        assert!(!is_valid_name("slash/y"));
        assert!(!is_valid_name("é"));
        assert!(is_valid_name(&"x".repeat(64)));
        assert!(!is_valid_name(&"x".repeat(65)));
    }
}
