//! Phones and e-mail addresses as people type them, normalised so that one number or address
//! matches however it was written: for search, duplicate detection and messengers.

use crate::fields::ValueError;

fn bad(code: &'static str, message: &str) -> ValueError {
    ValueError {
        code,
        message: message.into(),
    }
}

/// The international calling code of a country (ISO 3166 alpha-2), for numbers typed without
/// one. The countries amoCRM's users mostly work in; others need the "+".
pub fn calling_code(country: &str) -> Option<&'static str> {
    Some(match country.to_ascii_uppercase().as_str() {
        "RU" | "KZ" => "7",
        "US" | "CA" => "1",
        "GB" => "44",
        "DE" => "49",
        "FR" => "33",
        "ES" => "34",
        "IT" => "39",
        "PL" => "48",
        "TR" => "90",
        "UA" => "380",
        "BY" => "375",
        "UZ" => "998",
        "KG" => "996",
        "AM" => "374",
        "GE" => "995",
        "AZ" => "994",
        "IL" => "972",
        "AE" => "971",
        "IN" => "91",
        "BR" => "55",
        "MX" => "52",
        _ => return None,
    })
}

/// The national number length where a trunk prefix ("8" in Russia, "0" in most of Europe) is
/// replaced by the country code.
fn national_length(code: &str) -> Option<usize> {
    match code {
        "7" => Some(10),
        "1" => Some(10),
        "44" => Some(10),
        "380" => Some(9),
        "375" => Some(9),
        "998" => Some(9),
        _ => None,
    }
}

/// A phone number as stored for matching: E.164 (`+79161234567`) when the number has a country
/// code or the account's country gives one, else its digits. Separators (spaces, dashes, dots,
/// brackets) are ignored; letters or a number too short or too long are refused.
pub fn normalize_phone(raw: &str, country: Option<&str>) -> Result<String, ValueError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(bad("required", "enter a phone number"));
    }
    // An extension ("ext. 12", "доб. 12") is not part of the number.
    let main = raw.split([',', ';']).next().unwrap_or(raw);
    let lower = main.to_lowercase();
    let main = ["ext", "доб", "x"]
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .map(|i| &main[..i])
        .unwrap_or(main);
    let plus = main.trim_start().starts_with('+') || main.trim_start().starts_with("00");
    let mut digits = String::new();
    for c in main.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '/' | '+' | '\u{a0}' | '\t' => {}
            _ => return Err(bad("invalid_phone", "a phone number has only digits")),
        }
    }
    if main.trim_start().starts_with("00") {
        digits.drain(..2);
    }
    if digits.len() < 5 || digits.len() > 15 {
        return Err(bad("invalid_phone", "a phone number has 5 to 15 digits"));
    }
    if plus {
        return Ok(format!("+{digits}"));
    }
    let code = country.and_then(calling_code);
    if let Some(code) = code {
        let national = national_length(code);
        // 8 916 123-45-67 in Russia, 0 20 7946 0958 in the UK: the trunk prefix goes.
        if let Some(n) = national {
            if digits.len() == n + 1
                && (digits.starts_with('8') && code == "7" || digits.starts_with('0'))
            {
                return Ok(format!("+{code}{}", &digits[1..]));
            }
            if digits.len() == n {
                return Ok(format!("+{code}{digits}"));
            }
        }
        // Already with the country code but without "+": 7 916 123 45 67.
        if digits.starts_with(code) && national.is_some_and(|n| digits.len() == n + code.len()) {
            return Ok(format!("+{digits}"));
        }
    }
    Ok(digits)
}

/// The digits of what someone typed in a search box, when it looks like (part of) a phone number.
pub fn phone_digits(query: &str) -> Option<String> {
    let q = query.trim();
    if q.is_empty()
        || !q
            .chars()
            .all(|c| c.is_ascii_digit() || " -.()+\u{a0}".contains(c))
    {
        return None;
    }
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    (digits.len() >= 3).then_some(digits)
}

/// An e-mail address, trimmed and lower-cased; refused unless it has the shape name@domain.tld.
pub fn normalize_email(raw: &str) -> Result<String, ValueError> {
    let e = raw.trim().to_lowercase();
    if e.is_empty() {
        return Err(bad("required", "enter an e-mail address"));
    }
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && domain.contains('.')
                && !domain.contains("..")
                && domain
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '.' || c == '-')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && e.matches('@').count() == 1;
    if ok {
        Ok(e)
    } else {
        Err(bad(
            "invalid_email",
            "an e-mail address such as anna@example.com",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_match_however_they_were_typed() {
        let ru = Some("RU");
        for typed in [
            "+7 (916) 123-45-67",
            "8 916 123 45 67",
            "89161234567",
            "7 916 1234567",
            "916 123-45-67",
            "+7 916 123 45 67 доб. 12",
            "007 916 123 45 67",
        ] {
            assert_eq!(
                normalize_phone(typed, ru).unwrap(),
                "+79161234567",
                "{typed}"
            );
        }
        assert_eq!(
            normalize_phone("020 7946 0958", Some("GB")).unwrap(),
            "+442079460958"
        );
        assert_eq!(
            normalize_phone("+1 415 555 2671", ru).unwrap(),
            "+14155552671"
        );
        // Without a country to go by, the digits.
        assert_eq!(normalize_phone("12-34-56", None).unwrap(), "123456");
        assert_eq!(
            normalize_phone("call me", ru).unwrap_err().code,
            "invalid_phone"
        );
        assert_eq!(normalize_phone("12", ru).unwrap_err().code, "invalid_phone");
        assert_eq!(
            normalize_phone("+1234567890123456", ru).unwrap_err().code,
            "invalid_phone"
        );
        assert_eq!(phone_digits("916-123").as_deref(), Some("916123"));
        assert_eq!(phone_digits("Anna"), None);
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            normalize_email("  Anna.Petrova@Example.COM ").unwrap(),
            "anna.petrova@example.com"
        );
        for bad in [
            "anna",
            "anna@",
            "@example.com",
            "anna@example",
            "a b@example.com",
            "a@@b.com",
            "a@b..com",
        ] {
            assert_eq!(
                normalize_email(bad).unwrap_err().code,
                "invalid_email",
                "{bad}"
            );
        }
    }
}
