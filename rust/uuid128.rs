//! Canonical UUID text <-> `u128`.
//!
//! Task ids are stored as 16-byte integers instead of 36-byte strings so the route table stays
//! compact. Only the canonical `8-4-4-4-12` hex form is accepted (any case); braces, URNs and
//! unhyphenated forms are rejected because NodeODM never produces them.

use std::fmt;

/// Length of the canonical text form.
pub const TEXT_LEN: usize = 36;

/// Why a string is not a canonical UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UuidError {
    /// The string is not 36 bytes long.
    Length(usize),
    /// A hyphen is missing at the given byte offset.
    Hyphen(usize),
    /// A non-hex byte was found at the given byte offset.
    Digit(usize),
}

impl fmt::Display for UuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UuidError::Length(n) => write!(f, "expected 36 characters, got {n}"),
            UuidError::Hyphen(i) => write!(f, "expected '-' at position {i}"),
            UuidError::Digit(i) => write!(f, "expected a hex digit at position {i}"),
        }
    }
}

impl std::error::Error for UuidError {}

const fn is_hyphen_pos(i: usize) -> bool {
    matches!(i, 8 | 13 | 18 | 23)
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits in any case) into a `u128`.
pub fn parse(text: &str) -> Result<u128, UuidError> {
    let bytes = text.as_bytes();
    if bytes.len() != TEXT_LEN {
        // Report characters, not bytes, so the message matches what the user typed.
        return Err(UuidError::Length(text.chars().count()));
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_hyphen_pos(i) {
            if b != b'-' {
                return Err(UuidError::Hyphen(i));
            }
            continue;
        }
        let digit = hex_value(b).ok_or(UuidError::Digit(i))?;
        value = (value << 4) | u128::from(digit);
    }
    Ok(value)
}

/// Formats a `u128` as a lowercase canonical UUID.
pub fn format(value: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; TEXT_LEN];
    let mut shift = 128u32;
    for (i, slot) in out.iter_mut().enumerate() {
        if is_hyphen_pos(i) {
            *slot = b'-';
            continue;
        }
        shift -= 4;
        *slot = HEX[((value >> shift) & 0xF) as usize];
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_lowercases() {
        let text = "1B4E28BA-2FA1-11D2-883F-0016D3CCA427";
        let value = parse(text).unwrap();
        assert_eq!(value, 0x1b4e28ba_2fa1_11d2_883f_0016d3cca427);
        assert_eq!(format(value), text.to_lowercase());
    }

    #[test]
    fn extremes() {
        let zero = "00000000-0000-0000-0000-000000000000";
        let max = "ffffffff-ffff-ffff-ffff-ffffffffffff";
        assert_eq!(parse(zero), Ok(0));
        assert_eq!(parse(max), Ok(u128::MAX));
        assert_eq!(format(0), zero);
        assert_eq!(format(u128::MAX), max);
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(parse(""), Err(UuidError::Length(0)));
        assert_eq!(
            parse("1b4e28ba2fa111d2883f0016d3cca427"),
            Err(UuidError::Length(32))
        );
        assert_eq!(
            parse("1b4e28ba-2fa1-11d2-883f_0016d3cca427"),
            Err(UuidError::Hyphen(23))
        );
        assert_eq!(
            parse("1b4e28ba-2fa1-11d2-883f-0016d3cca42g"),
            Err(UuidError::Digit(35))
        );
        assert_eq!(
            parse("{b4e28ba-2fa1-11d2-883f-0016d3cca427"),
            Err(UuidError::Digit(0))
        );
        // 36 bytes but multi-byte characters: must not panic.
        assert!(parse("é4e28ba-2fa1-11d2-883f-0016d3cca427").is_err());
        assert!(parse("1b4e28ba-2fa1-11d2-883f-0016d3cca4\u{e9}").is_err());
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(
            UuidError::Length(3).to_string(),
            "expected 36 characters, got 3"
        );
        assert_eq!(
            UuidError::Digit(4).to_string(),
            "expected a hex digit at position 4"
        );
    }
}
