//! Request input, checked field by field so that every error names its field: JSON bodies
//! ([`Fields`]) and query strings ([`Query`], with pagination).

use super::error::ApiError;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest page a list endpoint returns.
pub const MAX_LIMIT: usize = 1000;
/// Page size when the request does not say.
pub const DEFAULT_LIMIT: usize = 100;

/// The members of a JSON object body, taken one at a time; [`Fields::finish`] rejects the
/// members nobody took.
pub struct Fields {
    map: serde_json::Map<String, serde_json::Value>,
}

impl Fields {
    /// Parses a JSON object body. The content type must be `application/json`: an HTML form
    /// on another site cannot send that without a CORS preflight, which drover never allows.
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Fields, ApiError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !json {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                None,
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(map)) => Ok(Fields { map }),
            Ok(_) => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                None,
                "the body must be a JSON object",
            )),
            Err(e) => Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                None,
                format!("the body is not valid JSON: {e}"),
            )),
        }
    }

    fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<Option<T>>, ApiError> {
        match self.map.remove(name) {
            None => Ok(None),
            Some(serde_json::Value::Null) => Ok(Some(None)),
            Some(v) => serde_json::from_value::<T>(v)
                .map(|t| Some(Some(t)))
                .map_err(|e| ApiError::bad(name, format!("{name}: {e}"))),
        }
    }

    /// A member that must be present and not null.
    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, ApiError> {
        self.take(name)?
            .flatten()
            .ok_or_else(|| ApiError::bad(name, format!("{name} is required")))
    }

    /// A member that may be absent or null (both read as `None`).
    pub fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, ApiError> {
        Ok(self.take(name)?.flatten())
    }

    /// For updates: absent is `None` (keep), null is `Some(None)` (clear), a value is
    /// `Some(Some(v))`.
    pub fn change<T: DeserializeOwned>(
        &mut self,
        name: &str,
    ) -> Result<Option<Option<T>>, ApiError> {
        self.take(name)
    }

    /// Fails on the first member that was not taken.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::bad(k, format!("unknown field {k:?}"))),
        }
    }
}

/// Query parameters, taken one at a time; [`Query::finish`] rejects unknown ones.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn new(pairs: Vec<(String, String)>) -> Query {
        Query { pairs }
    }

    /// The value of parameter `name` (the last one when repeated); empty values read as absent.
    pub fn get(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                found = Some(v.clone());
                false
            } else {
                true
            }
        });
        found.filter(|v| !v.is_empty())
    }

    fn number(&mut self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if n <= max => Ok(n),
                _ => Err(ApiError::bad(
                    name,
                    format!("{name}: {v:?} is not a number from 0 to {max}"),
                )),
            },
        }
    }

    /// `limit` (1 to [`MAX_LIMIT`]) and `offset`.
    pub fn page(&mut self) -> Result<Page, ApiError> {
        let limit = self.number("limit", DEFAULT_LIMIT, MAX_LIMIT)?;
        if limit == 0 {
            return Err(ApiError::bad("limit", "limit: must be at least 1"));
        }
        let offset = self.number("offset", 0, usize::MAX)?;
        Ok(Page { limit, offset })
    }

    pub fn finish(self) -> Result<(), ApiError> {
        match self.pairs.first() {
            None => Ok(()),
            Some((k, _)) => Err(ApiError::bad(k, format!("unknown query parameter {k:?}"))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: usize,
    pub offset: usize,
}

/// One page of a list: `{"items": [...], "total": N, "offset": O, "limit": L}`.
#[derive(Serialize)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
}

impl Page {
    pub fn of<T>(self, all: Vec<T>) -> Listing<T> {
        let total = all.len();
        Listing {
            items: all.into_iter().skip(self.offset).take(self.limit).collect(),
            total,
            offset: self.offset,
            limit: self.limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        h
    }

    #[test]
    fn fields_name_the_bad_member() {
        let mut f = Fields::parse(&json_headers(), br#"{"mac":"zz","extra":1}"#).unwrap();
        let e = f.required::<crate::store::model::Mac>("mac").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("mac"));
        assert!(e.message.contains("not a MAC"), "{}", e.message);
        let e = f.finish().unwrap_err();
        assert_eq!(e.field.as_deref(), Some("extra"));
        let mut f = Fields::parse(&json_headers(), br#"{"ip":null}"#).unwrap();
        assert_eq!(
            f.change::<std::net::Ipv4Addr>("ip").unwrap(),
            Some(None::<std::net::Ipv4Addr>)
        );
        assert!(Fields::parse(&HeaderMap::new(), b"{}").is_err());
        assert!(Fields::parse(&json_headers(), b"[1]").is_err());
    }

    #[test]
    fn queries_page_and_reject_unknown_parameters() {
        let mut q = Query::new(vec![
            ("limit".into(), "5".into()),
            ("offset".into(), "2".into()),
            ("colour".into(), "red".into()),
        ]);
        let page = q.page().unwrap();
        let listing = page.of((0..10).collect::<Vec<_>>());
        assert_eq!(listing.items, vec![2, 3, 4, 5, 6]);
        assert_eq!(listing.total, 10);
        assert_eq!(q.finish().unwrap_err().field.as_deref(), Some("colour"));
        let mut q = Query::new(vec![("limit".into(), "5000".into())]);
        assert_eq!(q.page().unwrap_err().field.as_deref(), Some("limit"));
    }
}
