//! The credentials every outgoing peer call carries: the shared cluster secret
//! (`cluster.p2p.api_key`, sent as the [`PEER_KEY_HEADER`] metadata) and, for `https://`
//! peer URIs, TLS verified against `tls.ca_cert` with this peer's own certificate offered
//! as the client certificate (so a peer port that requires mTLS accepts it).
//!
//! Every peer channel is built by [`PeerSecurity::channel`]; the server side of the same
//! checks is `api::peer_auth`.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Status;

use crate::error::{Error, Result};
use crate::settings::Settings;

/// The metadata key that carries the cluster secret on the peer port.
pub const PEER_KEY_HEADER: &str = "x-shoal-peer-key";

/// A channel to another peer with the credentials attached to every call.
pub type PeerChannel = InterceptedService<Channel, AttachKey>;

/// How this peer authenticates itself to the others; see the module doc.
#[derive(Clone, Default)]
pub struct PeerSecurity {
    key: Option<MetadataValue<Ascii>>,
    tls: Option<ClientTlsConfig>,
}

impl std::fmt::Debug for PeerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret itself.
        f.debug_struct("PeerSecurity")
            .field("key", &self.key.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PeerSecurity {
    /// No secret, no TLS: plain `http://` peers only (unit tests, single nodes).
    pub fn none() -> PeerSecurity {
        PeerSecurity::default()
    }

    /// From `cluster.p2p.api_key` and, when `tls.ca_cert` is set, the CA and this peer's
    /// certificate and key (`tls.cert` / `tls.key`). Files that cannot be read stop
    /// start-up here.
    pub fn from_settings(settings: &Settings) -> Result<PeerSecurity> {
        let key = settings
            .cluster
            .p2p
            .api_key
            .as_deref()
            .map(|key| {
                let mut value = MetadataValue::try_from(key).map_err(|_| {
                    Error::BadInput("cluster.p2p.api_key: must be visible ASCII characters".into())
                })?;
                // Kept out of HTTP/2 header compression tables.
                value.set_sensitive(true);
                Ok::<_, Error>(value)
            })
            .transpose()?;
        // Whenever a CA is configured, `https://` peers can be verified; this peer's own
        // certificate, when it has one, is its client certificate.
        let tls = match &settings.tls.ca_cert {
            Some(ca_path) => {
                let ca = Certificate::from_pem(read_file("tls.ca_cert", ca_path)?);
                let mut config = ClientTlsConfig::new().ca_certificate(ca);
                if let (Some(cert), Some(key)) = (&settings.tls.cert, &settings.tls.key) {
                    config = config.identity(Identity::from_pem(
                        read_file("tls.cert", cert)?,
                        read_file("tls.key", key)?,
                    ));
                }
                Some(config)
            }
            None => None,
        };
        Ok(PeerSecurity { key, tls })
    }

    /// An endpoint for `uri` with TLS when the URI is `https://` (an error when no CA is
    /// configured to verify the peer with).
    pub fn endpoint(&self, uri: &str) -> std::result::Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(uri.to_string())
            .map_err(|e| format!("invalid peer URI `{uri}`: {e}"))?;
        if endpoint.uri().scheme_str() != Some("https") {
            return Ok(endpoint);
        }
        let Some(tls) = &self.tls else {
            return Err(format!(
                "peer URI `{uri}` is https but no tls.ca_cert is configured to verify it \
                 (set cluster.p2p.enable_tls with tls.cert, tls.key and tls.ca_cert)"
            ));
        };
        endpoint
            .tls_config(tls.clone())
            .map_err(|e| format!("TLS settings for `{uri}`: {e}"))
    }

    /// A lazily connecting channel from `endpoint` whose every call carries the secret.
    pub fn channel(&self, endpoint: Endpoint) -> PeerChannel {
        InterceptedService::new(
            endpoint.connect_lazy(),
            AttachKey {
                key: self.key.clone(),
            },
        )
    }
}

/// Puts the cluster secret into every outgoing request's metadata.
#[derive(Clone)]
pub struct AttachKey {
    key: Option<MetadataValue<Ascii>>,
}

impl Interceptor for AttachKey {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, Status> {
        if let Some(key) = &self.key {
            request.metadata_mut().insert(PEER_KEY_HEADER, key.clone());
        }
        Ok(request)
    }
}

fn read_file(key: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::BadInput(format!("{key}: cannot read {}: {e}", path.display())))
}
