//! Typed ids: a `UserId` can never be passed where a `DealId` is expected.
//!
//! Ids are 64-bit integers, as amoCRM's are, so that API clients written for it keep working.

/// Declares a newtype id over `i64` that serialises as a plain number and maps to `BIGINT`.
///
/// The calling crate needs `serde` and `diesel` among its dependencies.
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
            diesel::expression::AsExpression, diesel::deserialize::FromSqlRow,
        )]
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse::<i64>().map(Self)
            }
        }

        impl diesel::serialize::ToSql<diesel::sql_types::BigInt, diesel::pg::Pg> for $name {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
            ) -> diesel::serialize::Result {
                <i64 as diesel::serialize::ToSql<diesel::sql_types::BigInt, diesel::pg::Pg>>::to_sql(
                    &self.0,
                    &mut out.reborrow(),
                )
            }
        }

        impl diesel::deserialize::FromSql<diesel::sql_types::BigInt, diesel::pg::Pg> for $name {
            fn from_sql(bytes: diesel::pg::PgValue<'_>) -> diesel::deserialize::Result<Self> {
                <i64 as diesel::deserialize::FromSql<diesel::sql_types::BigInt, diesel::pg::Pg>>::from_sql(bytes)
                    .map(Self)
            }
        }
    };
}

typed_id!(
    /// A tenant. Every row of every module carries one, and every query is scoped by it.
    AccountId
);
typed_id!(
    /// A person who signs in. Owned by the accounts module; other modules keep it as a plain id.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialise_as_plain_numbers_and_parse_back() {
        let id = UserId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!("42".parse::<UserId>().unwrap(), id);
        assert!("x".parse::<AccountId>().is_err());
        assert_eq!(id.to_string(), "42");
    }
}
