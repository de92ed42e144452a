//! What a Bedrock failure means for retries, failover and the circuit: by
//! the exception's name where Bedrock gives one (in an HTTP error or as an
//! exception event inside a 200 stream), else by the HTTP status.

use aws_sdk_bedrockruntime::config::http::HttpResponse;
use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;

use super::super::{FailureKind, ProviderError};
use super::NAME;

/// The kind of the exception `code` (`ThrottlingException`, or the event
/// stream's `throttlingException`) or, for an unknown one, of `status`.
fn kind(code: Option<&str>, status: Option<u16>) -> FailureKind {
    let name = code.map(|c| c.trim_end_matches("Exception").to_ascii_lowercase());
    match name.as_deref() {
        Some("throttling" | "servicequotaexceeded") => FailureKind::RateLimited,
        Some(
            "serviceunavailable" | "internalserver" | "internalfailure" | "modelstreamerror" | "modeltimeout"
            | "modelnotready" | "modelerror",
        ) => FailureKind::Fault,
        Some("validation" | "accessdenied" | "resourcenotfound" | "invalidsignature" | "unrecognizedclient") => {
            FailureKind::Rejected
        }
        _ => match status {
            Some(429) => FailureKind::RateLimited,
            Some(408 | 500..) | None => FailureKind::Fault,
            Some(_) => FailureKind::Rejected,
        },
    }
}

/// A failed ConverseStream request (before the stream began): the
/// exception's name comes in the `x-amzn-ErrorType` header.
pub(super) fn of_call(error: &SdkError<ConverseStreamError, HttpResponse>) -> ProviderError {
    failure(error, |e| e.code().map(str::to_owned), |raw| Some(raw.status().as_u16()))
}

/// A failure inside the stream: an exception event (named by its
/// `:exception-type`, which the SDK turns into the variant), or a broken stream.
pub(super) fn of_event<R: std::fmt::Debug>(error: &SdkError<ConverseStreamOutputError, R>) -> ProviderError {
    let name = |e: &ConverseStreamOutputError| {
        let modelled = match e {
            ConverseStreamOutputError::ThrottlingException(_) => Some("throttlingException"),
            ConverseStreamOutputError::ServiceUnavailableException(_) => Some("serviceUnavailableException"),
            ConverseStreamOutputError::InternalServerException(_) => Some("internalServerException"),
            ConverseStreamOutputError::ModelStreamErrorException(_) => Some("modelStreamErrorException"),
            ConverseStreamOutputError::ValidationException(_) => Some("validationException"),
            _ => None,
        };
        modelled.map(str::to_owned).or_else(|| e.code().map(str::to_owned))
    };
    failure(error, name, |_| None)
}

/// Only a service's answer can be a rejection; timeouts, broken
/// connections, unreadable frames (a bad CRC, a frame cut short) and
/// credentials that could not be had are faults.
fn failure<E, R>(
    error: &SdkError<E, R>,
    name: impl Fn(&E) -> Option<String>,
    status: impl Fn(&R) -> Option<u16>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (kind, message) = match error {
        SdkError::ServiceError(service) => {
            let (err, status) = (service.err(), status(service.raw()));
            let code = name(err);
            let prefix = status.map(|s| format!("HTTP {s} ")).unwrap_or_default();
            let what = code.as_deref().unwrap_or("error");
            let text = format!("{prefix}{what}: {}", err.message().unwrap_or("no message"));
            (kind(code.as_deref(), status), text)
        }
        SdkError::TimeoutError(_) => (FailureKind::Fault, "timed out".to_owned()),
        other => (FailureKind::Fault, DisplayErrorContext(other).to_string()),
    };
    ProviderError::new(NAME, kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_map_by_name_and_unknown_ones_by_status() {
        assert_eq!(kind(Some("ThrottlingException"), Some(429)), FailureKind::RateLimited);
        assert_eq!(kind(Some("throttlingException"), None), FailureKind::RateLimited, "the stream's spelling");
        assert_eq!(kind(Some("serviceUnavailableException"), None), FailureKind::Fault);
        assert_eq!(kind(Some("modelStreamErrorException"), None), FailureKind::Fault);
        assert_eq!(kind(Some("internalServerException"), None), FailureKind::Fault);
        assert_eq!(kind(Some("validationException"), None), FailureKind::Rejected);
        assert_eq!(kind(Some("InvalidSignatureException"), Some(403)), FailureKind::Rejected);
        assert_eq!(kind(Some("SomethingNew"), Some(503)), FailureKind::Fault);
        assert_eq!(kind(Some("SomethingNew"), Some(404)), FailureKind::Rejected);
        assert_eq!(kind(None, None), FailureKind::Fault);
    }
}
