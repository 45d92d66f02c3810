//! The agent's HTTPS client of the server's API.

use std::time::Duration;

use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use zaibei_types::api::{AgentCredentials, ErrorBody, RegisterAgent};
use zaibei_types::jobs::{AgentJob, JobReport};

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or did not answer in time (retry later).
    #[error("the server is unreachable: {0}")]
    Unreachable(String),
    /// The server refused the request.
    #[error("the server answered {status} {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// TLS set-up failed (bad CA file).
    #[error("TLS: {0}")]
    Tls(String),
    /// The agent's state directory.
    #[error("{0}")]
    State(String),
}

impl ClientError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable(_) => true,
            ClientError::Refused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// A client of one server.
#[derive(Debug, Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
}

impl AgentClient {
    /// A client of `base` (`https://HOST:PORT`) that also trusts the PEM certificates in
    /// `ca_pem` (the server's self-signed certificate, say).
    pub fn new(base: &str, ca_pem: Option<&[u8]>) -> Result<AgentClient, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots_or_empty());
        if let Some(pem) = ca_pem {
            let certs = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientError::Tls(format!("reading the CA certificate: {e}")))?;
            if certs.is_empty() {
                return Err(ClientError::Tls("the CA file holds no certificate".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| ClientError::Tls(e.to_string()))?;
            }
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(AgentClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.unwrap_or_default();
        let (code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                "unknown".to_owned(),
                String::from_utf8_lossy(&body).chars().take(200).collect(),
            ),
        };
        Err(ClientError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }

    fn unreachable(e: reqwest::Error) -> ClientError {
        ClientError::Unreachable(e.to_string())
    }

    /// Registers this host with a one-time token.
    pub async fn register(
        &self,
        token: &str,
        hostname: &str,
    ) -> Result<AgentCredentials, ClientError> {
        let resp = self
            .http
            .post(format!("{}/api/v1/agents/register", self.base))
            .json(&RegisterAgent {
                token: token.to_owned(),
                hostname: hostname.to_owned(),
            })
            .send()
            .await
            .map_err(Self::unreachable)?;
        Self::check(resp)
            .await?
            .json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Claims the next job, if any.
    pub async fn claim(&self, tenant: &str, token: &str) -> Result<Option<AgentJob>, ClientError> {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/tenants/{tenant}/agent/jobs/claim",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await
            .map_err(Self::unreachable)?;
        let resp = Self::check(resp).await?;
        if resp.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        resp.json()
            .await
            .map(Some)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Reports on a job.
    pub async fn report(
        &self,
        tenant: &str,
        token: &str,
        job: &str,
        report: &JobReport,
    ) -> Result<(), ClientError> {
        let resp = self
            .http
            .post(format!(
                "{}/api/v1/tenants/{tenant}/agent/jobs/{job}/report",
                self.base
            ))
            .bearer_auth(token)
            .json(report)
            .send()
            .await
            .map_err(Self::unreachable)?;
        Self::check(resp).await.map(|_| ())
    }
}

/// No built-in public roots: the agent trusts the system's certificates only through an
/// explicit CA file, and otherwise the platform's own certificate authority.
fn webpki_roots_or_empty() -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    Vec::new()
}
