//! JSON text for the `json` extension type: validation of ready-made text, and the pieces a
//! serialiser needs (string escaping, float formatting) so values from any caller come out
//! compact and identical to what the Go SDK's encoder writes (no HTML escaping, raw UTF-8).
//!
//! Validation runs in two tiers. [`is_valid`] is a flat, allocation-free scanner that only
//! answers yes or no, fast enough for pre-dumped JSON on every row; when it says no, the
//! recursive [`Validator`] (the reference) runs again to decide and to say where and why. The
//! scanner never accepts text the reference refuses (a proptest holds it to that), so the
//! reference alone defines what is valid.

/// Deeper nesting than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 512;

/// Checks that `text` is one complete JSON value (RFC 8259), surrounded by optional whitespace.
pub fn validate(text: &[u8]) -> Result<(), String> {
    if is_valid(text) {
        return Ok(());
    }
    match std::str::from_utf8(text) {
        Ok(text) => validate_reference(text),
        Err(_) => Err("is not valid JSON text (not UTF-8)".into()),
    }
}

/// [`validate`] for text already known to be UTF-8.
pub fn validate_str(text: &str) -> Result<(), String> {
    if is_valid(text.as_bytes()) {
        return Ok(());
    }
    validate_reference(text)
}

/// The reference validator: slower, and the one that explains a refusal.
fn validate_reference(text: &str) -> Result<(), String> {
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

/// Whether `text` is one complete JSON value in UTF-8, surrounded by optional whitespace.
///
/// A table-driven automaton: one table lookup per byte outside strings, with a stack of one
/// bit per open container (up to 64; deeper text is left to the reference) for the few bytes
/// that open or close one, no recursion and no allocation. String contents are skipped eight
/// bytes at a time, and checked as UTF-8 only when they hold non-ASCII bytes (outside strings,
/// JSON is ASCII by grammar). It never accepts text the reference refuses.
pub fn is_valid(text: &[u8]) -> bool {
    // The open containers, innermost in the lowest bit: 1 for an object, 0 for an array.
    // Deeper nesting than fits is left to the reference.
    let mut path = 0u64;
    let mut depth = 0u32;
    let mut state = state::VALUE;
    let mut at = 0;
    while let Some(&byte) = text.get(at) {
        at += 1;
        // States are multiples of 16 and classes below 16: the index is a byte, in bounds.
        let next = TRANSITIONS[usize::from(state | CLASSES[usize::from(byte)])];
        if next < action::FIRST {
            state = next;
            continue;
        }
        state = match next {
            action::OPEN_OBJECT | action::OPEN_ARRAY if depth < u64::BITS => {
                depth += 1;
                path = path << 1 | u64::from(next == action::OPEN_OBJECT);
                if next == action::OPEN_ARRAY {
                    state::VALUE_OR_END
                } else if let Some(end) = member(text, at) {
                    at = end;
                    state::VALUE
                } else {
                    state::KEY_OR_END
                }
            }
            action::CLOSE_OBJECT | action::CLOSE_ARRAY
                if depth > 0 && (path & 1 == 1) == (next == action::CLOSE_OBJECT) =>
            {
                depth -= 1;
                path >>= 1;
                state::AFTER
            }
            action::COMMA if depth > 0 => {
                if path & 1 == 0 {
                    state::VALUE
                } else if let Some(end) = member(text, at) {
                    at = end;
                    state::VALUE
                } else {
                    state::KEY
                }
            }
            action::STRING | action::KEY => match string_end(text, at) {
                Some(end) => {
                    at = end;
                    if next == action::KEY {
                        state::COLON
                    } else {
                        state::AFTER
                    }
                }
                None => return false,
            },
            action::LITERAL => {
                let word: &[u8] = match byte {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if !text[at - 1..].starts_with(word) {
                    return false;
                }
                at += word.len() - 1;
                state::AFTER
            }
            _ => return false,
        };
    }
    depth == 0 && state::COMPLETE.contains(&state)
}

/// The start of an object member from `at` (whitespace, the key, whitespace, `:` and
/// whitespace): where its value starts. `None` if the text there is anything else, for the
/// automaton to take it byte by byte: most often `}`, or an error it will find itself.
#[inline(always)]
fn member(text: &[u8], mut at: usize) -> Option<usize> {
    at = skip_whitespace(text, at);
    if text.get(at) != Some(&b'"') {
        return None;
    }
    at = skip_whitespace(text, string_end(text, at + 1)?);
    if text.get(at) != Some(&b':') {
        return None;
    }
    Some(skip_whitespace(text, at + 1))
}

#[inline(always)]
fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

/// States of [`is_valid`]'s automaton: what may come next. Each is a multiple of 16, so that
/// a state and a byte class add up to a table index.
mod state {
    /// A value (the start, after `:`, after `,` in an array).
    pub const VALUE: u8 = 0;
    /// A value or `]` (after `[`).
    pub const VALUE_OR_END: u8 = 0x10;
    /// An object key (after `,` in an object).
    pub const KEY: u8 = 0x20;
    /// An object key or `}` (after `{`).
    pub const KEY_OR_END: u8 = 0x30;
    /// `:` after a key.
    pub const COLON: u8 = 0x40;
    /// `,`, `}` or `]` after a value, or the end.
    pub const AFTER: u8 = 0x50;
    /// Inside a number: after `-`, after a leading `0`, in the integer digits, after `.`, in
    /// the fraction, after `e`, after the exponent's sign, in the exponent.
    pub const MINUS: u8 = 0x60;
    pub const ZERO: u8 = 0x70;
    pub const INT: u8 = 0x80;
    pub const DOT: u8 = 0x90;
    pub const FRACTION: u8 = 0xa0;
    pub const E: u8 = 0xb0;
    pub const E_SIGN: u8 = 0xc0;
    pub const EXPONENT: u8 = 0xd0;
    /// States in which the text may end (at depth 0).
    pub const COMPLETE: [u8; 5] = [AFTER, ZERO, INT, FRACTION, EXPONENT];
}

/// Transitions of [`is_valid`]'s automaton that need more than a change of state; above
/// every state.
mod action {
    pub const FIRST: u8 = 0xe0;
    pub const OPEN_OBJECT: u8 = 0xe0;
    pub const OPEN_ARRAY: u8 = 0xe1;
    pub const CLOSE_OBJECT: u8 = 0xe2;
    pub const CLOSE_ARRAY: u8 = 0xe3;
    pub const COMMA: u8 = 0xe4;
    /// A string value starts.
    pub const STRING: u8 = 0xe5;
    /// A key starts.
    pub const KEY: u8 = 0xe6;
    /// `t`, `f` or `n`: `true`, `false` or `null`, or nothing valid.
    pub const LITERAL: u8 = 0xe7;
    pub const INVALID: u8 = 0xff;
}

/// Byte classes of [`is_valid`]'s automaton.
mod class {
    pub const OTHER: u8 = 0;
    pub const SPACE: u8 = 1;
    pub const OPEN_OBJECT: u8 = 2;
    pub const CLOSE_OBJECT: u8 = 3;
    pub const OPEN_ARRAY: u8 = 4;
    pub const CLOSE_ARRAY: u8 = 5;
    pub const COLON: u8 = 6;
    pub const COMMA: u8 = 7;
    pub const QUOTE: u8 = 8;
    pub const MINUS: u8 = 9;
    pub const PLUS: u8 = 10;
    pub const ZERO: u8 = 11;
    pub const DIGIT: u8 = 12;
    pub const DOT: u8 = 13;
    pub const E: u8 = 14;
    pub const LITERAL: u8 = 15;
}

/// The class of every byte.
static CLASSES: [u8; 256] = {
    let mut classes = [class::OTHER; 256];
    classes[b' ' as usize] = class::SPACE;
    classes[b'\t' as usize] = class::SPACE;
    classes[b'\n' as usize] = class::SPACE;
    classes[b'\r' as usize] = class::SPACE;
    classes[b'{' as usize] = class::OPEN_OBJECT;
    classes[b'}' as usize] = class::CLOSE_OBJECT;
    classes[b'[' as usize] = class::OPEN_ARRAY;
    classes[b']' as usize] = class::CLOSE_ARRAY;
    classes[b':' as usize] = class::COLON;
    classes[b',' as usize] = class::COMMA;
    classes[b'"' as usize] = class::QUOTE;
    classes[b'-' as usize] = class::MINUS;
    classes[b'+' as usize] = class::PLUS;
    classes[b'0' as usize] = class::ZERO;
    let mut digit = b'1';
    while digit <= b'9' {
        classes[digit as usize] = class::DIGIT;
        digit += 1;
    }
    classes[b'.' as usize] = class::DOT;
    classes[b'e' as usize] = class::E;
    classes[b'E' as usize] = class::E;
    classes[b't' as usize] = class::LITERAL;
    classes[b'f' as usize] = class::LITERAL;
    classes[b'n' as usize] = class::LITERAL;
    classes
};

/// The next state (or action) for every state and byte class.
static TRANSITIONS: [u8; 256] = {
    use class as c;
    use state as s;
    let mut t = [action::INVALID; 256];
    // Where a value may start.
    let mut v = 0;
    while v < 2 {
        let from = [s::VALUE, s::VALUE_OR_END][v];
        t[(from | c::SPACE) as usize] = from;
        t[(from | c::OPEN_OBJECT) as usize] = action::OPEN_OBJECT;
        t[(from | c::OPEN_ARRAY) as usize] = action::OPEN_ARRAY;
        t[(from | c::QUOTE) as usize] = action::STRING;
        t[(from | c::MINUS) as usize] = s::MINUS;
        t[(from | c::ZERO) as usize] = s::ZERO;
        t[(from | c::DIGIT) as usize] = s::INT;
        t[(from | c::LITERAL) as usize] = action::LITERAL;
        v += 1;
    }
    t[(s::VALUE_OR_END | c::CLOSE_ARRAY) as usize] = action::CLOSE_ARRAY;
    t[(s::KEY | c::SPACE) as usize] = s::KEY;
    t[(s::KEY | c::QUOTE) as usize] = action::KEY;
    t[(s::KEY_OR_END | c::SPACE) as usize] = s::KEY_OR_END;
    t[(s::KEY_OR_END | c::QUOTE) as usize] = action::KEY;
    t[(s::KEY_OR_END | c::CLOSE_OBJECT) as usize] = action::CLOSE_OBJECT;
    t[(s::COLON | c::SPACE) as usize] = s::COLON;
    t[(s::COLON | c::COLON) as usize] = s::VALUE;
    // Where a value may end: after one, and in the states where a number may end.
    let mut e = 0;
    while e < 5 {
        let from = s::COMPLETE[e];
        t[(from | c::SPACE) as usize] = s::AFTER;
        t[(from | c::COMMA) as usize] = action::COMMA;
        t[(from | c::CLOSE_OBJECT) as usize] = action::CLOSE_OBJECT;
        t[(from | c::CLOSE_ARRAY) as usize] = action::CLOSE_ARRAY;
        e += 1;
    }
    t[(s::MINUS | c::ZERO) as usize] = s::ZERO;
    t[(s::MINUS | c::DIGIT) as usize] = s::INT;
    t[(s::ZERO | c::DOT) as usize] = s::DOT;
    t[(s::ZERO | c::E) as usize] = s::E;
    t[(s::INT | c::ZERO) as usize] = s::INT;
    t[(s::INT | c::DIGIT) as usize] = s::INT;
    t[(s::INT | c::DOT) as usize] = s::DOT;
    t[(s::INT | c::E) as usize] = s::E;
    t[(s::DOT | c::ZERO) as usize] = s::FRACTION;
    t[(s::DOT | c::DIGIT) as usize] = s::FRACTION;
    t[(s::FRACTION | c::ZERO) as usize] = s::FRACTION;
    t[(s::FRACTION | c::DIGIT) as usize] = s::FRACTION;
    t[(s::FRACTION | c::E) as usize] = s::E;
    t[(s::E | c::PLUS) as usize] = s::E_SIGN;
    t[(s::E | c::MINUS) as usize] = s::E_SIGN;
    t[(s::E | c::ZERO) as usize] = s::EXPONENT;
    t[(s::E | c::DIGIT) as usize] = s::EXPONENT;
    t[(s::E_SIGN | c::ZERO) as usize] = s::EXPONENT;
    t[(s::E_SIGN | c::DIGIT) as usize] = s::EXPONENT;
    t[(s::EXPONENT | c::ZERO) as usize] = s::EXPONENT;
    t[(s::EXPONENT | c::DIGIT) as usize] = s::EXPONENT;
    t
};

/// Eight copies of a byte.
const fn splat(b: u8) -> u64 {
    (b as u64) * 0x0101_0101_0101_0101
}

const HIGH_BITS: u64 = splat(0x80);

/// The end (just past the closing quote) of the string whose content starts at `start`, if
/// it is a valid string.
#[inline(always)]
fn string_end(text: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    // Any byte with its high bit set, among the bytes passed over.
    let mut high = 0u64;
    loop {
        // Eight bytes at a time up to the next quote, backslash or control byte. Each test
        // below flags its first match exactly (later bytes may be flagged falsely, from a
        // borrow), so the lowest flag of all is the first byte of interest.
        while let Some(chunk) = text.get(at..at + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            let flags = (has_zero(word ^ splat(b'"'))
                | has_zero(word ^ splat(b'\\'))
                | (word.wrapping_sub(splat(0x20)) & !word))
                & HIGH_BITS;
            if flags == 0 {
                high |= word;
                at += 8;
            } else {
                let skip = flags.trailing_zeros() as usize / 8;
                // Only the bytes before the stop count: they are string content.
                high |= word & ((1u64 << (skip * 8)) - 1);
                at += skip;
                break;
            }
        }
        match *text.get(at)? {
            b'"' => {
                if high & HIGH_BITS != 0 && std::str::from_utf8(&text[start..at]).is_err() {
                    return None;
                }
                return Some(at + 1);
            }
            b'\\' => {
                at += 1;
                match *text.get(at)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 1,
                    b'u' => {
                        let hex = text.get(at + 1..at + 5)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        at += 5;
                    }
                    _ => return None,
                }
            }
            0x00..=0x1f => return None,
            b => {
                // Plain content in the last few bytes, where no full word is left.
                high |= u64::from(b);
                at += 1;
            }
        }
    }
}

/// The high bit set in every byte of `word` that is zero (exact for the lowest such byte).
#[inline]
fn has_zero(word: u64) -> u64 {
    word.wrapping_sub(splat(0x01)) & !word
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
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if !needs_escape(bytes) {
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

/// The bytes [`write_str`] escapes: control bytes, the quote and the backslash.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Whether `bytes` holds a quote, a backslash or a control byte: anything [`write_str`] must
/// escape. Short strings byte by byte through a table; longer ones eight bytes at a time, as
/// the scanner reads strings.
fn needs_escape(bytes: &[u8]) -> bool {
    if bytes.len() < 16 {
        // Short strings (keys, labels): a table lookup per byte beats setting up words.
        return bytes.iter().any(|&b| ESCAPED[usize::from(b)]);
    }
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let flags = (has_zero(word ^ splat(b'"'))
            | has_zero(word ^ splat(b'\\'))
            | (word.wrapping_sub(splat(0x20)) & !word))
            & HIGH_BITS;
        if flags != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
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

    /// The reference's verdict on raw bytes (what [`validate`] would say without the scanner).
    fn reference_accepts(text: &[u8]) -> bool {
        std::str::from_utf8(text).is_ok_and(|t| validate_reference(t).is_ok())
    }

    #[test]
    fn scanner_agrees_with_the_reference_on_edge_cases() {
        let long = format!("\"{}\"", "abcdefgh\\n\\u00e9é".repeat(9));
        let nested = format!("{}{}", "[{\"k\":".repeat(200), "1}]".repeat(200));
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let mut cases: Vec<Vec<u8>> = [
            "0",
            "-0",
            "-",
            "-a",
            "01",
            "1.",
            "1.5",
            "1e",
            "1e+",
            "1E-7",
            "-12.5e10",
            "[]",
            "{}",
            "[1,]",
            "[,1]",
            "{\"a\":1,}",
            "{\"a\" : [ 1 , 2 ] }",
            "{\"a\"}",
            "{,}",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"\\/\"",
            "\"\\a\"",
            "\"tab\there\"",
            "\"12345678\"",
            "\"1234567\\\"\"",
            "\"é\"",
            "\"\u{10ffff}\"",
            "true",
            "tru",
            "false",
            "nul",
            "null ",
            " \t\r\n[ ]\n",
            "[}",
            "{]",
            "\"",
            "\"abc",
            "{\"size\": 5, \"labels\": {\"env\": \"prod\", \"tier\": [1, 2]}}",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec())
        .collect();
        for text in [long, nested, deepest, too_deep] {
            cases.push(text.into_bytes());
        }
        for bad in [
            &b"\"\xff\""[..],
            b"\"abcdefgh\xc3\"",
            b"\"\xc3\xa9\xed\xa0\x80\"",
            b"\xef\xbb\xbf1",
            b"\"\x00\"",
            b"\"abcdefgh\x1f\"",
            b"[\xc3\xa9]",
        ] {
            cases.push(bad.to_vec());
        }
        for text in cases {
            assert_eq!(
                validate(&text).is_ok(),
                reference_accepts(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
            // The scanner leaves nesting deeper than 64 to the reference.
            if !text.starts_with(&[b'['; 65]) {
                assert_eq!(
                    is_valid(&text),
                    reference_accepts(&text),
                    "{:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
        let within = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert!(is_valid(within.as_bytes()));
    }

    /// JSON text with whitespace in random places, and string content that exercises the
    /// eight-byte scan (escapes, non-ASCII, control bytes land at every offset).
    fn json_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let ws = "[ \t\n\r]{0,2}";
        let string = "\"([a-z0-9 é€😀]|\\\\[\"\\\\/bfnrt]|\\\\u[0-9a-fA-F]{4}){0,20}\"";
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            string,
        ];
        leaf.prop_recursive(6, 48, 6, move |inner| {
            prop_oneof![
                (proptest::collection::vec(inner.clone(), 0..5), ws).prop_map(|(items, w)| {
                    format!("[{w}{}{w}]", items.join(&format!("{w},{w}")))
                }),
                (
                    proptest::collection::vec(("\"[a-z]{0,9}\"", inner), 0..5),
                    ws
                )
                    .prop_map(|(entries, w)| {
                        let entries: Vec<String> = entries
                            .into_iter()
                            .map(|(k, v)| format!("{k}{w}:{w}{v}"))
                            .collect();
                        format!("{{{w}{}{w}}}", entries.join(&format!("{w},{w}")))
                    }),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn scanner_accepts_generated_json(text in json_text()) {
            proptest::prop_assert!(is_valid(text.as_bytes()), "{}", text);
            proptest::prop_assert!(reference_accepts(text.as_bytes()));
        }

        /// Damaged JSON: one byte replaced, removed or inserted anywhere (raw bytes, so broken
        /// UTF-8 too). The scanner must never accept what the reference refuses.
        #[test]
        fn scanner_agrees_with_the_reference_on_damaged_json(
            text in json_text(),
            at in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
            how in 0u8..3,
        ) {
            let mut text = text.into_bytes();
            let at = at % (text.len() + 1);
            match how {
                0 if at < text.len() => text[at] = byte,
                1 if at < text.len() => { text.remove(at); }
                _ => text.insert(at, byte),
            }
            proptest::prop_assert_eq!(
                is_valid(&text),
                reference_accepts(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }

        #[test]
        fn scanner_agrees_with_the_reference_on_noise(
            text in proptest::collection::vec(
                proptest::sample::select(b" \t[]{}:,\"\\u0123456789aefnlrstE.+-\x01\xc3\xa9\xff".to_vec()),
                0..40,
            )
        ) {
            proptest::prop_assert_eq!(is_valid(&text), reference_accepts(&text));
        }
    }

    proptest::proptest! {
        #[test]
        fn validator_agrees_with_serde(text in "[ \\[\\]{}:,\"a\\\\u0-9eE.+-]{0,24}|(true|false|null|nul)") {
            proptest::prop_assert_eq!(validate(text.as_bytes()).is_ok(), serde_accepts(text.as_bytes()));
        }

        #[test]
        fn escape_check_agrees_with_a_byte_loop(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![9 => 0x20u8..=0xff, 1 => proptest::prelude::any::<u8>()],
                0..40,
            )
        ) {
            let naive = bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
            proptest::prop_assert_eq!(needs_escape(&bytes), naive);
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
