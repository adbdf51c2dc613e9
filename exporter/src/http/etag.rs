//! Conditional GETs (RFC 9110 §8.8.3, §13.1.2): every `200` answer to a GET
//! carries a strong `ETag` computed from its bytes and content type, and a
//! GET whose `If-None-Match` names it is answered `304 Not Modified` with
//! no body. A dashboard that polls an answer which has not changed gets a
//! few hundred bytes of headers instead of the body again.
//!
//! The tag is the first 128 bits of the SHA-256 of the content type and the
//! body, so equal tags mean byte-equal representations (a strong validator)
//! whichever exporter replica answered. Answers without their own
//! `Cache-Control` get `private, no-cache`: tenant data no shared cache may
//! keep, and which a browser revalidates each time (so it sends the tag).
//!
//! Must not: change anything but `GET` `200` answers.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// Headers of a `200` that describe its body, left out of a `304`.
const BODY_HEADERS: [header::HeaderName; 3] = [
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::CONTENT_DISPOSITION,
];

/// The strong entity tag of a body of `content_type`, quoted.
pub fn entity_tag(content_type: &[u8], body: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(content_type)
        .chain_update([0])
        .chain_update(body)
        .finalize();
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether `If-None-Match` in `headers` names `tag` (or is `*`). The
/// comparison is the weak one RFC 9110 prescribes for `If-None-Match`: a
/// `W/` prefix is ignored.
pub fn none_match_names(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// The middleware: tags `200` answers to GETs, and answers `304` when the
/// request's `If-None-Match` names the tag.
pub async fn conditional(req: Request, next: Next) -> Response {
    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let request_headers = req.headers().clone();
    let response = next.run(req).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The answers are already whole in memory (JSON, CSV, a chart, the
    // report): collecting them copies no more than the socket would.
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "reading an answer to tag it");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let tag = entity_tag(content_type, &bytes);
    parts.headers.insert(
        header::ETAG,
        HeaderValue::from_str(&tag).expect("hex in quotes is a header value"),
    );
    parts
        .headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("private, no-cache"));
    if none_match_names(&request_headers, &tag) {
        parts.status = StatusCode::NOT_MODIFIED;
        for name in BODY_HEADERS {
            parts.headers.remove(name);
        }
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_none_match(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn tags_are_strong_and_follow_body_and_type() {
        let t = entity_tag(b"application/json", b"{}");
        assert!(
            t.starts_with('"') && t.ends_with('"') && t.len() == 34,
            "{t}"
        );
        assert_eq!(t, entity_tag(b"application/json", b"{}"));
        assert_ne!(t, entity_tag(b"application/json", b"{ }"));
        assert_ne!(t, entity_tag(b"text/csv", b"{}"));
    }

    #[test]
    fn if_none_match_lists_star_and_weak_tags() {
        let tag = "\"abc\"";
        assert!(none_match_names(&with_none_match(&["\"abc\""]), tag));
        assert!(none_match_names(
            &with_none_match(&["\"x\", W/\"abc\""]),
            tag
        ));
        assert!(none_match_names(
            &with_none_match(&["\"x\"", "\"abc\""]),
            tag
        ));
        assert!(none_match_names(&with_none_match(&["*"]), tag));
        assert!(!none_match_names(&with_none_match(&["\"abcd\""]), tag));
        assert!(!none_match_names(&with_none_match(&["abc"]), tag));
        assert!(!none_match_names(&HeaderMap::new(), tag));
    }
}
