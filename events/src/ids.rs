//! Identifiers of the aggregates.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use uuid::Uuid;

/// A user of the platform: a positive decimal number of at most 19 digits
/// (the seed writes it both as `123456789` and as `"123456789"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a user id is a positive decimal number of at most 19 digits")]
pub struct UserIdError;

impl UserId {
    /// The operator's own account, owner of manual delegations. No parsed id can equal it
    /// (parsed ids have at most 19 digits).
    pub const OPERATOR: UserId = UserId(u64::MAX);

    pub fn parse(text: &str) -> Result<UserId, UserIdError> {
        let t = text.trim();
        if t.is_empty() || t.len() > 19 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(UserIdError);
        }
        match t.parse::<u64>() {
            Ok(0) | Err(_) => Err(UserIdError),
            Ok(n) => Ok(UserId(n)),
        }
    }

    pub fn from_number(n: u64) -> Result<UserId, UserIdError> {
        Self::parse(&n.to_string())
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == UserId::OPERATOR {
            f.write_str("operator")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

impl Serialize for UserId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for UserId {
    /// Accepts a JSON string or a JSON integer, as the seed uses both.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire<'a> {
            Num(u64),
            #[serde(borrow)]
            Text(std::borrow::Cow<'a, str>),
        }
        match Wire::deserialize(d)? {
            Wire::Num(n) => UserId::from_number(n),
            Wire::Text(t) if t == "operator" => Ok(UserId::OPERATOR),
            Wire::Text(t) => UserId::parse(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// New ids are UUID v7: time-ordered, so orders sort by creation in the read models.
    pub fn new_v7() -> OrderId {
        OrderId(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Result<OrderId, uuid::Error> {
        Uuid::parse_str(text.trim()).map(OrderId)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Any UUID names an order (as [`OrderId::parse`] accepts any): for ids stored as bytes.
    pub fn from_uuid(uuid: Uuid) -> OrderId {
        OrderId(uuid)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// An API key's public id (the key itself is shown once and only its hash is kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiKeyId(Uuid);

impl ApiKeyId {
    pub fn new_v7() -> ApiKeyId {
        ApiKeyId(Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Result<ApiKeyId, uuid::Error> {
        Uuid::parse_str(text.trim()).map(ApiKeyId)
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_positive_decimals() {
        assert_eq!(UserId::parse("123456789").unwrap().get(), 123456789);
        assert!(UserId::parse("0").is_err());
        assert!(UserId::parse("-5").is_err());
        assert!(UserId::parse("abc").is_err());
        assert!(UserId::parse("99999999999999999999").is_err());
        let from_json: UserId = serde_json::from_str("123").unwrap();
        let from_text: UserId = serde_json::from_str("\"123\"").unwrap();
        assert_eq!(from_json, from_text);
        assert!(serde_json::from_str::<UserId>("1.5").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_a_user_id_or_refused_without_panicking(text in "\\PC{0,24}") {
            if let Ok(u) = UserId::parse(&text) {
                proptest::prop_assert_eq!(UserId::parse(&u.to_string()), Ok(u));
            }
        }

        #[test]
        fn any_positive_number_of_at_most_19_digits_is_a_user_id(n in 1u64..=9_999_999_999_999_999_999) {
            proptest::prop_assert_eq!(UserId::parse(&n.to_string()).map(UserId::get), Ok(n));
        }

        #[test]
        fn any_text_is_an_order_id_or_refused_without_panicking(text in "\\PC{0,40}") {
            if let Ok(o) = OrderId::parse(&text) {
                proptest::prop_assert_eq!(OrderId::parse(&o.to_string()).ok(), Some(o));
            }
        }
    }
}
