//! Money: an amount in minor units (kopecks, cents) with its ISO 4217 currency.
//!
//! Never a float. Deal budgets in amoCRM are whole numbers in the account's currency; we keep minor
//! units so that currencies with cents stay exact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::AppError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const RUB: Currency = Currency(*b"RUB");
    pub const USD: Currency = Currency(*b"USD");
    pub const EUR: Currency = Currency(*b"EUR");

    pub fn code(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point; currencies without minor units have none.
    pub fn exponent(&self) -> u32 {
        match self.code() {
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "UGX" => 0,
            "KWD" | "BHD" | "OMR" | "JOD" | "TND" => 3,
            _ => 2,
        }
    }

    pub fn symbol(&self) -> &str {
        match self.code() {
            "RUB" => "₽",
            "USD" => "$",
            "EUR" => "€",
            "GBP" => "£",
            "KZT" => "₸",
            "UAH" => "₴",
            other => other,
        }
    }
}

impl FromStr for Currency {
    type Err = AppError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        let bytes = up.as_bytes();
        if bytes.len() == 3 && bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Currency([bytes[0], bytes[1], bytes[2]]))
        } else {
            Err(AppError::validation(
                "currency",
                "invalid",
                "a currency is a three-letter ISO 4217 code",
            ))
        }
    }
}

impl TryFrom<String> for Currency {
    type Error = AppError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in minor units: 12_345 RUB kopecks is 123.45 RUB.
    pub minor: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    fn scale(currency: Currency) -> i64 {
        10_i64.pow(currency.exponent())
    }

    /// Whole units, as amoCRM's `price` field carries them (fractions are dropped toward zero).
    pub fn whole_units(&self) -> i64 {
        self.minor / Self::scale(self.currency)
    }

    pub fn from_whole_units(units: i64, currency: Currency) -> Option<Money> {
        units
            .checked_mul(Self::scale(currency))
            .map(|minor| Money { minor, currency })
    }

    /// Parses a user's input such as `1 234,50` or `1234.5` in the given currency.
    pub fn parse(input: &str, currency: Currency) -> Result<Money, AppError> {
        let invalid =
            || AppError::validation("amount", "invalid", "enter an amount such as 1234.50");
        let cleaned: String = input
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
            .collect();
        let cleaned = cleaned.replace(',', ".");
        let (negative, digits) = match cleaned.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        let exp = currency.exponent() as usize;
        if int_part.is_empty() && frac_part.is_empty()
            || !int_part.chars().all(|c| c.is_ascii_digit())
            || !frac_part.chars().all(|c| c.is_ascii_digit())
            || frac_part.len() > exp
        {
            return Err(invalid());
        }
        let units: i64 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let frac: i64 = if frac_part.is_empty() {
            0
        } else {
            format!("{frac_part:0<exp$}")
                .parse()
                .map_err(|_| invalid())?
        };
        let minor = units
            .checked_mul(Self::scale(currency))
            .and_then(|m| m.checked_add(frac))
            .ok_or_else(invalid)?;
        Ok(Money {
            minor: if negative { -minor } else { minor },
            currency,
        })
    }
}

impl fmt::Display for Money {
    /// `1 234.50 ₽`: thin grouping that reads well in both English and Russian.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = Self::scale(self.currency);
        let abs = self.minor.unsigned_abs();
        let units = (abs / scale as u64).to_string();
        let mut grouped = String::new();
        for (i, ch) in units.chars().enumerate() {
            if i > 0 && (units.len() - i).is_multiple_of(3) {
                grouped.push('\u{a0}');
            }
            grouped.push(ch);
        }
        let sign = if self.minor < 0 { "-" } else { "" };
        let exp = self.currency.exponent() as usize;
        if exp > 0 {
            let frac = abs % scale as u64;
            write!(
                f,
                "{sign}{grouped}.{frac:0exp$}\u{a0}{}",
                self.currency.symbol()
            )
        } else {
            write!(f, "{sign}{grouped}\u{a0}{}", self.currency.symbol())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_input_exactly() {
        assert_eq!(
            Money::parse("1 234,50", Currency::RUB).unwrap().minor,
            123_450
        );
        assert_eq!(
            Money::parse("1234.5", Currency::RUB).unwrap().minor,
            123_450
        );
        assert_eq!(Money::parse("-7", Currency::USD).unwrap().minor, -700);
        assert_eq!(
            Money::parse("500", "JPY".parse().unwrap()).unwrap().minor,
            500
        );
        for bad in ["", "1.234", "abc", "1.2.3", "--1"] {
            assert!(
                Money::parse(bad, Currency::RUB).is_err(),
                "{bad} must be refused"
            );
        }
    }

    #[test]
    fn formats_and_converts_whole_units() {
        let m = Money::new(123_456_789, Currency::RUB);
        assert_eq!(m.to_string(), "1\u{a0}234\u{a0}567.89\u{a0}₽");
        assert_eq!(m.whole_units(), 1_234_567);
        assert_eq!(
            Money::from_whole_units(5, Currency::USD).unwrap().minor,
            500
        );
        assert!(Money::from_whole_units(i64::MAX, Currency::USD).is_none());
        assert!("rubles".parse::<Currency>().is_err());
        assert_eq!("eur".parse::<Currency>().unwrap(), Currency::EUR);
    }
}
