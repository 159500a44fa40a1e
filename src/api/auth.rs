//! API keys of the public ports (REST and gRPC), as Qdrant has them: `service.api_key`
//! grants everything, `service.read_only_api_key` grants reads. A key comes as the
//! `api-key` header (gRPC: metadata) or as `Authorization: Bearer <key>`.
//!
//! This module decides; the transports only ask. [`rest_access`] and [`grpc_access`]
//! say what a request needs from its method and path alone, and [`ApiKeys::check`]
//! compares that with the key presented, before any body is read (an upload with a bad
//! key is refused without reading it). The health probes stay open, as in Qdrant.

use axum::http::{HeaderMap, Method};

use crate::error::Error;
use crate::settings::ServiceSettings;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health probes: no key needed.
    Open,
    /// Reads: either key.
    Read,
    /// Creates, updates, deletes, recoveries, uploads: the full key.
    Manage,
}

/// The configured keys; built only when at least one is set.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    full: Option<String>,
    read_only: Option<String>,
}

impl ApiKeys {
    /// `None` when no key is configured (every request is allowed).
    pub fn from_settings(service: &ServiceSettings) -> Option<ApiKeys> {
        if service.api_key.is_none() && service.read_only_api_key.is_none() {
            return None;
        }
        Some(ApiKeys {
            full: service.api_key.clone(),
            read_only: service.read_only_api_key.clone(),
        })
    }

    /// Allows the request or says why not: no or wrong key → Unauthorized (401 /
    /// Unauthenticated), a read-only key on a write → Forbidden (403 / PermissionDenied).
    pub fn check(&self, headers: &HeaderMap, needed: Access) -> Result<(), Error> {
        if needed == Access::Open {
            return Ok(());
        }
        let Some(presented) = presented_key(headers) else {
            return Err(Error::Unauthorized(
                "Must provide an API key or an Authorization bearer token".into(),
            ));
        };
        if self.full.as_deref().is_some_and(|k| same_key(k, presented)) {
            return Ok(());
        }
        if self
            .read_only
            .as_deref()
            .is_some_and(|k| same_key(k, presented))
        {
            return match needed {
                Access::Manage => Err(Error::Forbidden(
                    "the read-only API key cannot change data; use the full API key".into(),
                )),
                Access::Open | Access::Read => Ok(()),
            };
        }
        Err(Error::Unauthorized("Invalid API key or JWT".into()))
    }
}

/// The key in `api-key`, else the token of `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(key) = headers.get("api-key").and_then(|v| v.to_str().ok()) {
        return Some(key);
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Compares keys in time that does not depend on where they differ (the public keys
/// here, the cluster secret in `peer_auth.rs`).
pub(crate) fn same_key(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// REST: the health probes are open; GETs and the POSTs that only read (retrieve,
/// search, query, scroll, count and their batches, as in Qdrant) need a read key;
/// everything else needs the full key.
pub fn rest_access(method: &Method, path: &str) -> Access {
    let path = path.trim_end_matches('/');
    if *method == Method::GET || *method == Method::HEAD {
        return match path {
            "" | "/healthz" | "/livez" | "/readyz" => Access::Open,
            _ => Access::Read,
        };
    }
    if *method == Method::OPTIONS {
        return Access::Open;
    }
    if *method == Method::POST && is_read_post(path) {
        return Access::Read;
    }
    Access::Manage
}

/// `POST /collections/{name}/points[/search|/query|...]` that only read.
fn is_read_post(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/collections/") else {
        return false;
    };
    let Some((_, tail)) = rest.split_once('/') else {
        return false;
    };
    matches!(
        tail,
        "points"
            | "points/search"
            | "points/search/batch"
            | "points/search/groups"
            | "points/query"
            | "points/query/batch"
            | "points/query/groups"
            | "points/scroll"
            | "points/count"
            | "points/recommend"
            | "points/recommend/batch"
            | "points/discover"
            | "points/discover/batch"
            | "facet"
    )
}

/// gRPC: the health check is open; the listed reads need a read key; every other
/// method needs the full key. `path` is `/package.Service/Method`.
pub fn grpc_access(path: &str) -> Access {
    match path {
        "/qdrant.Qdrant/HealthCheck" | "/grpc.health.v1.Health/Check" => Access::Open,
        "/qdrant.Collections/Get"
        | "/qdrant.Collections/List"
        | "/qdrant.Collections/ListCollectionAliases"
        | "/qdrant.Collections/ListAliases"
        | "/qdrant.Collections/CollectionClusterInfo"
        | "/qdrant.Collections/CollectionExists"
        | "/qdrant.Points/Get"
        | "/qdrant.Points/Search"
        | "/qdrant.Points/SearchBatch"
        | "/qdrant.Points/Scroll"
        | "/qdrant.Points/Count"
        | "/qdrant.Points/Query"
        | "/qdrant.Snapshots/List"
        | "/qdrant.Snapshots/ListFull" => Access::Read,
        _ if path.starts_with("/grpc.reflection.") => Access::Read,
        _ => Access::Manage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        ApiKeys {
            full: Some("full".into()),
            read_only: Some("ro".into()),
        }
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn keys_grant_what_they_should() {
        let k = keys();
        let none = HeaderMap::new();
        assert!(matches!(
            k.check(&none, Access::Read),
            Err(Error::Unauthorized(_))
        ));
        assert!(k.check(&none, Access::Open).is_ok());
        let wrong = headers("api-key", "nope");
        assert!(matches!(
            k.check(&wrong, Access::Read),
            Err(Error::Unauthorized(_))
        ));
        let ro = headers("api-key", "ro");
        assert!(k.check(&ro, Access::Read).is_ok());
        assert!(matches!(
            k.check(&ro, Access::Manage),
            Err(Error::Forbidden(_))
        ));
        let full = headers("authorization", "Bearer full");
        assert!(k.check(&full, Access::Manage).is_ok());
        let prefix = headers("api-key", "ful");
        assert!(k.check(&prefix, Access::Read).is_err());
    }

    #[test]
    fn reads_and_writes_are_told_apart() {
        assert_eq!(rest_access(&Method::GET, "/healthz"), Access::Open);
        assert_eq!(rest_access(&Method::GET, "/"), Access::Open);
        assert_eq!(rest_access(&Method::GET, "/collections"), Access::Read);
        assert_eq!(
            rest_access(&Method::POST, "/collections/c/points/search"),
            Access::Read
        );
        assert_eq!(
            rest_access(&Method::POST, "/collections/c/points"),
            Access::Read
        );
        assert_eq!(
            rest_access(&Method::PUT, "/collections/c/points"),
            Access::Manage
        );
        assert_eq!(
            rest_access(&Method::POST, "/collections/c/snapshots/upload"),
            Access::Manage
        );
        assert_eq!(
            rest_access(&Method::POST, "/collections/c/points/delete"),
            Access::Manage
        );
        assert_eq!(grpc_access("/qdrant.Points/Search"), Access::Read);
        assert_eq!(grpc_access("/qdrant.Points/Upsert"), Access::Manage);
        assert_eq!(grpc_access("/qdrant.Qdrant/HealthCheck"), Access::Open);
        assert_eq!(grpc_access("/qdrant.Snapshots/CreateFull"), Access::Manage);
    }
}
