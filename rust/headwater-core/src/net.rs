//! `inet` and `mac` values as the Go SDK stores and prints them: [`canonical_inet`] turns an
//! address or network into the text an `inet` column holds, [`parse_mac`] and [`format_mac`]
//! mirror Go's `net.ParseMAC` and `net.HardwareAddr.String()`.

use std::net::IpAddr;

/// Validates an IPv4 or IPv6 address, optionally with a prefix length (`192.0.2.1`,
/// `192.0.2.1/24`, `2001:db8::1/64`), and returns the text CloudQuery stores for it: Go's
/// `net.IPNet.String()` of what the Go SDK's inet scalar builds from the string.
///
/// The address is kept as written, not masked to its network (`192.0.2.1/24` stays so); a bare
/// address gets `/32` or `/128`; IPv6 is printed in RFC 5952 form. Like Go, an IPv4-mapped IPv6
/// address (`::ffff:192.0.2.1/120`) prints as IPv4 with the prefix reduced by 96 (`192.0.2.1/24`).
/// The error is a human-readable reason.
pub fn canonical_inet(text: &str) -> Result<String, String> {
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text.parse().map_err(|_| {
        format!(
            "{text:?} is not an IP address or network \
             (expected forms like 192.0.2.1, 192.0.2.0/24, 2001:db8::1 or 2001:db8::/32)"
        )
    })?;
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => bits,
        Some(p) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "{text:?} has prefix length {p:?}, which is not a whole number"
                ));
            }
            let value = p.bytes().fold(0u32, |n, b| {
                n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
            });
            if value > bits {
                return Err(format!(
                    "{text:?} has prefix length {p}, more than the {bits} bits of an IPv{} address",
                    if bits == 32 { 4 } else { 6 }
                ));
            }
            value
        }
    };
    Ok(match addr {
        IpAddr::V4(v4) => format!("{v4}/{prefix}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // Go's IPNet.String() prints mapped addresses as IPv4 with the last 32 mask bits.
            Some(v4) => format!("{v4}/{}", prefix.saturating_sub(96)),
            None => format!("{v6}/{prefix}"),
        },
    })
}

/// Parses a hardware address the way Go's `net.ParseMAC` does: `aa:bb:cc:dd:ee:ff`,
/// `aa-bb-cc-dd-ee-ff` or `aabb.ccdd.eeff`, for 6-, 8- or 20-byte addresses, hex digits in
/// either case. The error is a human-readable reason.
pub fn parse_mac(text: &str) -> Result<Vec<u8>, String> {
    parse_mac_bytes(text.as_bytes()).ok_or_else(|| {
        format!(
            "{text:?} is not a MAC address (expected 6, 8 or 20 hex byte pairs written like \
             01:23:45:67:89:ab, 01-23-45-67-89-ab or 0123.4567.89ab)"
        )
    })
}

fn parse_mac_bytes(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() < 14 {
        return None;
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let pair = |at: usize| Some(hex(s[at])? << 4 | hex(s[at + 1])?);
    if s[2] == b':' || s[2] == b'-' {
        let sep = s[2];
        if (s.len() + 1) % 3 != 0 {
            return None;
        }
        let n = (s.len() + 1) / 3;
        if n != 6 && n != 8 && n != 20 {
            return None;
        }
        (0..n)
            .map(|i| {
                let at = 3 * i;
                if at + 2 < s.len() && s[at + 2] != sep {
                    return None;
                }
                pair(at)
            })
            .collect()
    } else if s[4] == b'.' {
        if (s.len() + 1) % 5 != 0 {
            return None;
        }
        let n = 2 * (s.len() + 1) / 5;
        if n != 6 && n != 8 && n != 20 {
            return None;
        }
        let mut out = Vec::with_capacity(n);
        for group in 0..n / 2 {
            let at = 5 * group;
            if at + 4 < s.len() && s[at + 4] != b'.' {
                return None;
            }
            out.push(pair(at)?);
            out.push(pair(at + 2)?);
        }
        Some(out)
    } else {
        None
    }
}

/// Formats a hardware address like Go's `net.HardwareAddr.String()`: lowercase hex byte pairs
/// joined by `:` (the empty address is the empty string).
pub fn format_mac(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    write_mac(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends [`format_mac`] of `bytes` to `out`.
pub(crate) fn write_mac(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_keeps_the_address_and_adds_full_prefixes() {
        let cases = [
            ("192.0.2.1", "192.0.2.1/32"),
            ("192.0.2.1/24", "192.0.2.1/24"),
            ("192.0.2.0/24", "192.0.2.0/24"),
            ("10.0.0.1/0", "10.0.0.1/0"),
            ("10.0.0.1/032", "10.0.0.1/32"),
            ("0.0.0.0", "0.0.0.0/32"),
            ("2001:db8::1", "2001:db8::1/128"),
            ("2001:DB8:0:0:0:0:0:1/64", "2001:db8::1/64"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1/128"),
            (
                "2001:0db8:0000:0001:0000:0000:0000:0001/48",
                "2001:db8:0:1::1/48",
            ),
            ("fe80::1:0:0:0:1", "fe80:0:0:1::1/128"),
            ("::", "::/128"),
            ("::/0", "::/0"),
            ("::1", "::1/128"),
            ("1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0/128"),
            // IPv4-compatible (not mapped) addresses stay IPv6, as in Go.
            ("::1.2.3.4", "::102:304/128"),
            // IPv4-mapped: Go prints IPv4 and the last 32 bits of the mask.
            ("::ffff:192.0.2.1", "192.0.2.1/32"),
            ("::ffff:192.0.2.1/120", "192.0.2.1/24"),
            ("::ffff:c000:201/128", "192.0.2.1/32"),
            ("::ffff:192.0.2.1/64", "192.0.2.1/0"),
        ];
        for (input, expected) in cases {
            assert_eq!(canonical_inet(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn inet_rejections_say_why() {
        for input in [
            "",
            "/24",
            "192.0.2",
            "192.0.2.256",
            "01.2.3.4",
            "192.0.2.1 ",
            "2001:db8::1::2",
            "2001:db8::12345",
            "fe80::1%eth0",
            "example.com",
        ] {
            let err = canonical_inet(input).unwrap_err();
            assert!(err.contains("is not an IP address"), "{input}: {err}");
        }
        for input in [
            "192.0.2.1/24/1",
            "192.0.2.1/",
            "192.0.2.1/+8",
            "192.0.2.1/-1",
            "192.0.2.1/ 8",
            "::1/x",
        ] {
            let err = canonical_inet(input).unwrap_err();
            assert!(err.contains("not a whole number"), "{input}: {err}");
        }
        assert_eq!(
            canonical_inet("192.0.2.1/33"),
            Err(
                "\"192.0.2.1/33\" has prefix length 33, more than the 32 bits of an IPv4 address"
                    .into()
            )
        );
        assert!(canonical_inet("::1/129")
            .unwrap_err()
            .contains("128 bits of an IPv6"));
        assert!(canonical_inet("::ffff:1.2.3.4/129")
            .unwrap_err()
            .contains("128 bits"));
        assert!(canonical_inet("1.2.3.4/99999999999999999999")
            .unwrap_err()
            .contains("more than"));
    }

    #[test]
    fn mac_accepts_go_forms() {
        let six = vec![0x00, 0x00, 0x5e, 0x00, 0x53, 0x01];
        assert_eq!(parse_mac("00:00:5e:00:53:01"), Ok(six.clone()));
        assert_eq!(parse_mac("00-00-5E-00-53-01"), Ok(six.clone()));
        assert_eq!(parse_mac("0000.5e00.5301"), Ok(six.clone()));
        assert_eq!(parse_mac("0000.5E00.5301"), Ok(six.clone()));
        let eight = vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x00, 0x00, 0x01];
        assert_eq!(parse_mac("02:00:5e:10:00:00:00:01"), Ok(eight.clone()));
        assert_eq!(parse_mac("02-00-5e-10-00-00-00-01"), Ok(eight.clone()));
        assert_eq!(parse_mac("0200.5e10.0000.0001"), Ok(eight));
        let twenty: Vec<u8> = (0..20).collect();
        let colon = twenty
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_mac(&colon), Ok(twenty.clone()));
        let dotted = twenty
            .chunks(2)
            .map(|c| format!("{:02x}{:02x}", c[0], c[1]))
            .collect::<Vec<_>>()
            .join(".");
        assert_eq!(parse_mac(&dotted), Ok(twenty.clone()));
        assert_eq!(format_mac(&twenty), colon);
        assert_eq!(format_mac(&six), "00:00:5e:00:53:01");
        assert_eq!(format_mac(&[0xAB, 0xCD]), "ab:cd");
        assert_eq!(format_mac(&[]), "");
    }

    #[test]
    fn mac_rejections() {
        for input in [
            "",
            "00:00:5e:00:53",             // 5 bytes
            "00:00:5e:00:53:01:02",       // 7 bytes
            "00:00:5e:00:53:0",           // short group
            "00:00:5e:00:53:01:",         // trailing separator
            "00:00-5e:00:53:01",          // mixed separators
            "00:00:5e:00:53:0g",          // not hex
            "00.00.5e.00.53.01",          // dots between bytes
            "0000:5e00:5301",             // colons between groups
            "0000.5e00.530",              // short group
            "0000.5e00-5301",             // wrong group separator
            "00005e005301",               // no separators
            "+0:00:5e:00:53:01",          // sign
            "00:00:5e:00:53:01:02:03:04", // 9 bytes
            "00:00:5é:00:53:01",          // non-ASCII
        ] {
            let err = parse_mac(input).unwrap_err();
            assert!(err.contains("is not a MAC address"), "{input}: {err}");
        }
    }
}
