//! Exact decimals: parse the text of a Python `decimal.Decimal` (or of an `int`) into the unscaled
//! `i128` of a `decimal128(precision, scale)` column without ever rounding, and print unscaled
//! values the way the Go SDK's decimal scalar does (the `_cq_id` string form).

/// The largest precision a `decimal128` column can have.
pub const MAX_PRECISION: u8 = 38;

/// Parses `text` (`-12.340`, `1E+5`, `1.5e-3`, `0`, `-0.00`, `42`) into the unscaled value of a
/// `decimal128(precision, scale)` column.
///
/// Nothing is ever rounded: digits beyond `scale` are accepted only when they are zeros, and a
/// value needing more than `precision` digits is refused. `NaN`, `sNaN` and `Infinity` are
/// refused. The error says exactly why, naming the value.
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Result<i128, String> {
    if precision == 0 || precision > MAX_PRECISION {
        return Err(format!(
            "a decimal128 column's precision must be between 1 and {MAX_PRECISION}, not {precision}"
        ));
    }
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let lower_starts = |prefix: &str| {
        body.len() >= prefix.len() && body[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    if lower_starts("nan") || lower_starts("snan") {
        return Err(format!(
            "{text} is not a number (NaN); a decimal column cannot store it"
        ));
    }
    if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
        return Err(format!(
            "{text} is infinite; a decimal column cannot store it"
        ));
    }
    let not_a_number = || format!("{text:?} is not a decimal number");

    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int_digits, frac_digits) = match mantissa.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (mantissa, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int_digits.len() + frac_digits.len() == 0
        || !all_digits(int_digits)
        || !all_digits(frac_digits)
    {
        return Err(not_a_number());
    }
    let exponent = match exponent {
        Some(e) => parse_exponent(e).ok_or_else(not_a_number)?,
        None => 0,
    };

    // The value is M * 10^(exponent - frac_len), M being all mantissa digits in a row.
    let digits = || int_digits.bytes().chain(frac_digits.bytes());
    let leading_zeros = digits().take_while(|&b| b == b'0').count();
    let total = int_digits.len() + frac_digits.len();
    if leading_zeros == total {
        return Ok(0);
    }
    let trailing_zeros = int_digits
        .bytes()
        .chain(frac_digits.bytes())
        .rev()
        .take_while(|&b| b == b'0')
        .count();
    let significant = (total - leading_zeros - trailing_zeros) as i64;
    // value = S * 10^power with S the significant digits (no leading or trailing zeros).
    let power = exponent
        .saturating_sub(frac_digits.len() as i64)
        .saturating_add(trailing_zeros as i64);
    let shift = power.saturating_add(i64::from(scale));
    if shift < 0 {
        return Err(if scale >= 0 {
            format!(
                "{text} has {} fractional digits, more than the column's scale {scale}",
                -power
            )
        } else {
            format!(
                "{text} is not a multiple of 10^{}, as the column's scale {scale} requires",
                -i64::from(scale)
            )
        });
    }
    let needed = significant.saturating_add(shift);
    if needed > i64::from(precision) {
        return Err(format!(
            "{text} needs {needed} digits at scale {scale}, more than the column's precision {precision}"
        ));
    }
    // At most 38 digits: always fits in an i128.
    let mut unscaled: i128 = 0;
    for b in digits().skip(leading_zeros).take(significant as usize) {
        unscaled = unscaled * 10 + i128::from(b - b'0');
    }
    for _ in 0..shift {
        unscaled *= 10;
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// Parses an exponent (`+5`, `-3`, `7`), saturating far beyond any meaningful value.
fn parse_exponent(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: i64 = 0;
    for b in digits.bytes() {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    // Keep well away from overflow in later additions.
    let value = value.min(i64::MAX / 4);
    Some(if negative { -value } else { value })
}

/// Prints an unscaled decimal the way the Go SDK's `Decimal128.String()` does: exactly `scale`
/// fractional digits (`-12.30`, `0.05`, `7` for scale 0), or for a negative scale the integer
/// `unscaled * 10^-scale`.
pub fn format_decimal(unscaled: i128, scale: i8) -> String {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(unscaled.unsigned_abs());
    let mut out = Vec::with_capacity(digits.len() + 4);
    write_decimal_digits(&mut out, unscaled < 0, digits.as_bytes(), scale);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends the decimal whose unscaled magnitude is the ASCII `digits` (no sign, no leading zeros
/// except for zero itself) at `scale` to `out`, in the Go SDK's form (see [`format_decimal`]).
pub(crate) fn write_decimal_digits(out: &mut Vec<u8>, negative: bool, digits: &[u8], scale: i8) {
    let zero = digits.iter().all(|&b| b == b'0');
    if negative && !zero {
        out.push(b'-');
    }
    if scale <= 0 {
        out.extend_from_slice(digits);
        if !zero {
            out.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
        }
        return;
    }
    let scale = scale as usize;
    if digits.len() <= scale {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - digits.len()));
        out.extend_from_slice(digits);
    } else {
        let (int, frac) = digits.split_at(digits.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_python_decimal_strings() {
        assert_eq!(parse_decimal("-12.340", 10, 3), Ok(-12340));
        assert_eq!(parse_decimal("-12.340", 10, 2), Ok(-1234));
        assert_eq!(parse_decimal("1E+5", 10, 2), Ok(10_000_000));
        assert_eq!(parse_decimal("1.5e-3", 10, 4), Ok(15));
        assert_eq!(parse_decimal("0", 1, 0), Ok(0));
        assert_eq!(parse_decimal("-0.00", 5, 2), Ok(0));
        assert_eq!(parse_decimal("0E-1000", 5, 2), Ok(0));
        assert_eq!(parse_decimal("0E+1000", 5, 2), Ok(0));
        assert_eq!(parse_decimal("42", 2, 0), Ok(42));
        assert_eq!(parse_decimal("+42", 4, 2), Ok(4200));
        assert_eq!(parse_decimal(".5", 4, 2), Ok(50));
        assert_eq!(parse_decimal("5.", 4, 2), Ok(500));
        assert_eq!(parse_decimal("000123.4500", 5, 2), Ok(12345));
        assert_eq!(parse_decimal("12300", 3, -2), Ok(123));
        assert_eq!(parse_decimal("1.23E+4", 3, -2), Ok(123));
        let max = "9".repeat(38);
        assert_eq!(parse_decimal(&max, 38, 0), Ok(10i128.pow(38) - 1));
        assert_eq!(
            parse_decimal(&format!("-{max}"), 38, 0),
            Ok(1 - 10i128.pow(38))
        );
        assert_eq!(
            parse_decimal("0.00000000000000000000000000000000000001", 38, 38),
            Ok(1)
        );
    }

    #[test]
    fn refuses_to_round() {
        assert_eq!(
            parse_decimal("12.345", 10, 2),
            Err("12.345 has 3 fractional digits, more than the column's scale 2".into())
        );
        assert_eq!(
            parse_decimal("1.5e-3", 10, 2),
            Err("1.5e-3 has 4 fractional digits, more than the column's scale 2".into())
        );
        assert_eq!(
            parse_decimal("12345", 10, -2),
            Err("12345 is not a multiple of 10^2, as the column's scale -2 requires".into())
        );
        assert_eq!(
            parse_decimal("1234.5", 5, 2),
            Err("1234.5 needs 6 digits at scale 2, more than the column's precision 5".into())
        );
        assert_eq!(
            parse_decimal("1E+1000", 38, 0),
            Err("1E+1000 needs 1001 digits at scale 0, more than the column's precision 38".into())
        );
        assert!(parse_decimal("1E-1000", 38, 2)
            .unwrap_err()
            .contains("has 1000 fractional digits"));
    }

    #[test]
    fn refuses_special_values_and_garbage() {
        for text in ["NaN", "-NaN", "sNaN", "NaN123", "nan"] {
            let err = parse_decimal(text, 10, 2).unwrap_err();
            assert!(err.contains("not a number (NaN)"), "{err}");
        }
        for text in ["Infinity", "-Infinity", "inf"] {
            let err = parse_decimal(text, 10, 2).unwrap_err();
            assert!(err.contains("is infinite"), "{err}");
        }
        for text in [
            "", "-", ".", "1.2.3", "1e", "1e+", "abc", "1_000", " 1", "1 ", "0x10", "1e2.5",
        ] {
            assert_eq!(
                parse_decimal(text, 10, 2),
                Err(format!("{text:?} is not a decimal number")),
                "{text}"
            );
        }
        assert!(parse_decimal("1", 0, 0).unwrap_err().contains("precision"));
        assert!(parse_decimal("1", 39, 0).unwrap_err().contains("precision"));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_decimal(-1230, 2), "-12.30");
        assert_eq!(format_decimal(5, 2), "0.05");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(0, 2), "0.00");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(format_decimal(0, 0), "0");
        assert_eq!(format_decimal(123, -2), "12300");
        assert_eq!(format_decimal(0, -2), "0");
        assert_eq!(format_decimal(-123, -1), "-1230");
        assert_eq!(
            format_decimal(i128::MIN, 0),
            "-170141183460469231731687303715884105728"
        );
        assert_eq!(format_decimal(1, 38), format!("0.{}1", "0".repeat(37)));
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            unscaled in -(10i128.pow(38) - 1)..10i128.pow(38),
            precision in 1u8..=38,
            scale in -10i8..=38,
        ) {
            let limit = 10i128.pow(u32::from(precision));
            let unscaled = unscaled % limit;
            let text = format_decimal(unscaled, scale);
            prop_assert_eq!(parse_decimal(&text, precision, scale), Ok(unscaled), "{}", text);
        }
    }
}
