//! JSON text for the `json` extension type: validation of ready-made text, and the pieces a
//! serialiser needs (string escaping, float formatting) so values from any caller come out
//! compact and identical to what the Go SDK's encoder writes (no HTML escaping, raw UTF-8).

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

/// Checks that `text` is one complete JSON value (RFC 8259), surrounded by optional whitespace.
pub fn validate(text: &[u8]) -> Result<(), String> {
    match std::str::from_utf8(text) {
        Ok(text) => validate_str(text),
        Err(_) => Err("is not valid JSON text (not UTF-8)".into()),
    }
}

/// [`validate`] for text already known to be UTF-8.
pub fn validate_str(text: &str) -> Result<(), String> {
    let text = text.as_bytes();
    let mut parser = Validator { text, at: 0 };
    parser
        .value(0)
        .and_then(|()| {
            parser.skip_whitespace();
            if parser.at == text.len() {
                Ok(())
            } else {
                Err("trailing characters")
            }
        })
        .map_err(|what| format!("is not valid JSON text ({what} at byte {})", parser.at))
}

/// A recursive-descent recogniser: no values are built, so it runs at memory speed.
struct Validator<'a> {
    text: &'a [u8],
    at: usize,
}

type Step = Result<(), &'static str>;

impl Validator<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        self.at += self.text[self.at..]
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(self.text.len() - self.at);
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(())
        } else {
            Err("invalid literal")
        }
    }

    fn value(&mut self, depth: usize) -> Step {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err("expected a value"),
            None => Err("unexpected end"),
        }
    }

    fn object(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.at += 1;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'"') {
                return Err("expected a string key");
            }
            self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(b':') {
                return Err("expected ':'");
            }
            self.at += 1;
            self.value(depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err("expected ',' or '}'"),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Step {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        self.at += 1;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err("expected ',' or ']'"),
            }
        }
    }

    fn string(&mut self) -> Step {
        self.at += 1;
        loop {
            // Jump to the next byte that is not plain string content.
            let special = self.text[self.at..]
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            self.at += special.ok_or("unterminated string")?;
            match self.text[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(());
                }
                b'\\' => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1
                        }
                        Some(b'u') => {
                            let hex = self.text.get(self.at + 1..self.at + 5);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err("invalid \\u escape");
                            }
                            self.at += 5;
                        }
                        _ => return Err("invalid escape"),
                    }
                }
                _ => return Err("control character in string"),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let count = self.text[self.at..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.text.len() - self.at);
        self.at += count;
        count
    }

    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err("invalid number"),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err("invalid number");
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err("invalid number");
            }
        }
        Ok(())
    }
}

/// Appends `s` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        // The common case: nothing to escape, one copy.
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
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

    fn serde_accepts(text: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn validator_edge_cases_agree_with_serde() {
        for text in [
            "0",
            "-0",
            "01",
            "1.",
            ".5",
            "1e5",
            "1E+5",
            "1e",
            "-",
            "[]",
            "[1,]",
            "{}",
            "{\"a\":}",
            "{\"a\" 1}",
            "{1:2}",
            "\"\\u00e9\"",
            "\"\\u00g0\"",
            "\"\\x\"",
            "\"a\nb\"",
            "tru",
            "true false",
            " null ",
            "[[[]]]",
            "\"unterminated",
            "{\"a\":[1,{\"b\":null}]}",
            "",
        ] {
            assert_eq!(
                validate(text.as_bytes()).is_ok(),
                serde_accepts(text.as_bytes()),
                "{text:?}"
            );
        }
        assert!(validate(&[b'"', 0xff, b'"']).is_err());
        let deep = "[".repeat(10_000);
        assert!(validate(deep.as_bytes())
            .unwrap_err()
            .contains("nested too deeply"));
    }

    proptest::proptest! {
        #[test]
        fn validator_agrees_with_serde(text in "[ \\[\\]{}:,\"a\\\\u0-9eE.+-]{0,24}|(true|false|null|nul)") {
            proptest::prop_assert_eq!(validate(text.as_bytes()).is_ok(), serde_accepts(text.as_bytes()));
        }

        #[test]
        fn escaped_strings_parse_back(s in ".*") {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            proptest::prop_assert_eq!(back, s);
        }
    }
}
