//! The API's errors: a status and a JSON body `{"error": MESSAGE, "field": FIELD}` whose
//! `field` names the request field (body key, query parameter or path segment) at fault, or is
//! `null` when no single field is.

use crate::admin::AdminError;
use crate::store::StoreError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub field: Option<String>,
    pub message: String,
    /// Seconds, for 429 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            field: field.map(str::to_string),
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400 naming `field`.
    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }

    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, None, message)
    }

    pub fn forbidden(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, None, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, None, message)
    }

    pub fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "API: {what}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            format!("{what}: internal error (see the server log)"),
        )
    }

    /// Maps an admin error for an operation on a `resource` ("node", "network", ...): an
    /// unknown `resource` is 404 (the path names it), an unknown other thing is the field of
    /// that kind ("image" when a node names a missing image).
    pub fn admin(resource: &str, e: AdminError) -> ApiError {
        use AdminError as A;
        let conflict = StatusCode::CONFLICT;
        let message = e.to_string();
        match e {
            A::Unknown { kind, .. } if kind == resource => ApiError {
                field: Some("name".into()),
                ..ApiError::not_found(message)
            },
            A::Unknown { kind, .. } => ApiError::bad(kind, message),
            A::BadName(_) => ApiError::bad("name", message),
            A::Exists { .. } => ApiError::new(conflict, Some("name"), message),
            A::DuplicateMac { .. } => ApiError::new(conflict, Some("mac"), message),
            A::DuplicateIp { .. } => ApiError::new(conflict, Some("ip"), message),
            A::NameTaken { .. } => ApiError::new(conflict, Some("aliases"), message),
            A::OutsideNetworks { .. } | A::NotHost { .. } => ApiError::bad("ip", message),
            A::BadRange { .. } => ApiError::bad("range", message),
            A::BadGateway(..) => ApiError::bad("gateway", message),
            A::BadDomain(_) => ApiError::bad("domain", message),
            A::BadSetting { .. } => ApiError::bad("value", message),
            A::Overlap { .. } => ApiError::new(conflict, Some("subnet"), message),
            A::ImageInUse { .. } => ApiError::new(conflict, None, message),
            A::Csv { .. } => ApiError::bad("csv", message),
            A::BadExport { field, .. } => ApiError::bad(field, message),
            A::BadPassword(_) => ApiError::bad("bmc_password_file", message),
            A::BadPersistent { .. } => ApiError::bad("persistent", message),
            A::NfsNeedsRootfs { .. } => ApiError::bad("root", message),
            A::NoVersion { field, .. } => ApiError::bad(field, message),
            A::Rule(_) => ApiError::bad("rule", message),
            A::RuleOverlap { .. } => ApiError::new(conflict, Some("rule"), message),
            A::File(e) => ApiError::bad(e.field(), message),
            A::BadFileSet { .. } => ApiError::bad("name", message),
            A::Store(StoreError::Conflict { .. }) => ApiError::new(conflict, None, message),
            A::Store(e) => ApiError::internal("store", e),
            A::Image(e) => ApiError::internal("image", e),
            A::Import(e) => ApiError::internal("image", e),
            A::Read { .. } => ApiError::internal("read", message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal("store", e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message, "field": self.field });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
