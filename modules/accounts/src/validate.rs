//! Input rules for accounts data, each failure a field error with a stable code.

use accounts_api::TIME_ZONES;
use kernel::{AppError, AppResult, FieldError};

#[derive(Default)]
pub struct Check {
    errors: Vec<FieldError>,
}

impl Check {
    pub fn fail(&mut self, field: &str, code: &str, message: &str) {
        self.errors.push(FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        });
    }

    pub fn finish(self) -> AppResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(AppError::from_fields(self.errors))
        }
    }

    /// A trimmed, non-empty text of at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let v = value.trim().to_string();
        if v.is_empty() {
            self.fail(field, "required", "this field is required");
        } else if v.chars().count() > max {
            self.fail(field, "too_long", &format!("at most {max} characters"));
        }
        v
    }

    /// A lower-cased, plausible e-mail address.
    pub fn email(&mut self, field: &str, value: &str) -> String {
        let v = value.trim().to_lowercase();
        let plausible = match v.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !v.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if v.is_empty() {
            self.fail(field, "required", "this field is required");
        } else if v.len() > 254 || !plausible {
            self.fail(
                field,
                "invalid_email",
                "enter an e-mail address such as anna@example.com",
            );
        }
        v
    }

    pub fn password(&mut self, field: &str, value: &str) {
        let n = value.chars().count();
        if n < 8 {
            self.fail(field, "too_short", "a password needs at least 8 characters");
        } else if n > 256 {
            self.fail(field, "too_long", "at most 256 characters");
        }
    }

    pub fn time_zone(&mut self, field: &str, value: &str) -> String {
        let v = value.trim().to_string();
        if !TIME_ZONES.contains(&v.as_str()) {
            self.fail(
                field,
                "invalid_time_zone",
                "choose a time zone from the list",
            );
        }
        v
    }
}

/// A subdomain-safe slug of an account name (`Acme Trading` → `acme-trading`).
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for ch in name.trim().to_lowercase().chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').chars().take(40).collect::<String>();
    out.trim_matches('-').to_string()
}

pub fn valid_subdomain(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_report_every_bad_field() {
        let mut c = Check::default();
        assert_eq!(c.email("email", "  Anna@Example.COM "), "anna@example.com");
        c.email("email2", "not-an-email");
        c.text("name", "   ", 10);
        c.password("password", "short");
        c.time_zone("tz", "Mars/Olympus");
        let err = c.finish().unwrap_err();
        let codes: Vec<_> = err
            .fields
            .iter()
            .map(|f| (f.field.as_str(), f.code.as_str()))
            .collect();
        assert_eq!(
            codes,
            vec![
                ("email2", "invalid_email"),
                ("name", "required"),
                ("password", "too_short"),
                ("tz", "invalid_time_zone")
            ]
        );
    }

    #[test]
    fn slugs_are_subdomain_safe() {
        assert_eq!(slug("Acme Trading, Ltd."), "acme-trading-ltd");
        assert_eq!(slug("Рога и копыта"), "");
        assert!(valid_subdomain("acme-1"));
        assert!(!valid_subdomain("-acme"));
        assert!(!valid_subdomain("Acme"));
    }
}
