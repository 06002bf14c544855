//! JSON text for the `json` extension type: validation of ready-made text, and the pieces a
//! serialiser needs (string escaping, float formatting) so values from any caller come out
//! compact and identical to what the Go SDK's encoder writes (no HTML escaping, raw UTF-8).

use serde::de::IgnoredAny;

/// Checks that `text` is one complete JSON value.
pub fn validate(text: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| format!("is not valid JSON text ({e})"))
}

/// Appends `s` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a finite float in its shortest round-trip form; NaN and infinities have no JSON
/// form and are refused.
pub fn write_f64(out: &mut Vec<u8>, value: f64) -> Result<(), &'static str> {
    if !value.is_finite() {
        return Err("NaN and infinity have no JSON representation");
    }
    out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    Ok(())
}

/// Appends an integer.
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_a_json_encoder() {
        let mut out = Vec::new();
        write_str(&mut out, "a\"b\\c\nd\u{1}é<>&");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001é<>&\""
        );
    }

    #[test]
    fn floats_and_validation() {
        let mut out = Vec::new();
        write_f64(&mut out, 1.5).unwrap();
        out.push(b',');
        write_f64(&mut out, 1e21).unwrap();
        assert_eq!(out, b"1.5,1e21");
        assert!(write_f64(&mut out, f64::NAN).is_err());
        assert!(validate(b"{\"a\": [1, 2.5, null]}").is_ok());
        assert!(validate(b"{\"a\": ")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(validate(b"1 2").is_err());
    }

    proptest::proptest! {
        #[test]
        fn escaped_strings_parse_back(s in ".*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
