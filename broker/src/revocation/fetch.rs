//! Upstream I/O for revocation: the only place (besides the card-helper CLI) that knows the
//! HTTP client.

use async_trait::async_trait;
use std::time::Duration;

/// Why a fetch failed, by cause (metrics label) and in words.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    pub fn cause(&self) -> &'static str {
        match self {
            FetchError::Timeout(_) => "timeout",
            FetchError::Connect(_) => "connect",
            FetchError::Status(_) => "http_status",
            FetchError::Other(_) => "fetch",
        }
    }
}

/// Gets bytes from revocation sources. Swappable in tests.
#[async_trait]
pub trait Fetcher: Send + Sync + 'static {
    /// POST a DER OCSPRequest (`application/ocsp-request`) and return the response body.
    async fn post_ocsp(
        &self,
        url: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError>;
    /// GET a CRL from an http(s) URL or read it from a `file:` path.
    async fn get(&self, location: &str, timeout: Duration) -> Result<Vec<u8>, FetchError>;
}

/// The real fetcher: reqwest over HTTP(S), tokio for files.
pub struct HttpFetcher {
    client: reqwest::Client,
}

/// Largest CRL accepted (a national CRL with millions of serials is tens of MB).
const MAX_CRL_BYTES: usize = 512 * 1024 * 1024;
/// Largest OCSP response accepted.
const MAX_OCSP_BYTES: usize = 1024 * 1024;

impl HttpFetcher {
    pub fn new() -> Result<HttpFetcher, FetchError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(8)
            .build()
            .map_err(|e| FetchError::Other(e.to_string()))?;
        Ok(HttpFetcher { client })
    }
}

fn classify(e: reqwest::Error, timeout: Duration) -> FetchError {
    if e.is_timeout() {
        FetchError::Timeout(timeout)
    } else if e.is_connect() {
        FetchError::Connect(e.to_string())
    } else {
        FetchError::Other(e.to_string())
    }
}

async fn read_limited(
    mut r: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, FetchError> {
    if !r.status().is_success() {
        return Err(FetchError::Status(r.status().as_u16()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await.map_err(|e| classify(e, timeout))? {
        if out.len() + chunk.len() > limit {
            return Err(FetchError::Other(format!(
                "response larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[async_trait]
impl Fetcher for HttpFetcher {
    async fn post_ocsp(
        &self,
        url: &str,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, FetchError> {
        let fut = async {
            let r = self
                .client
                .post(url)
                .header("content-type", "application/ocsp-request")
                .header("accept", "application/ocsp-response")
                .body(request)
                .send()
                .await
                .map_err(|e| classify(e, timeout))?;
            read_limited(r, MAX_OCSP_BYTES, timeout).await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    async fn get(&self, location: &str, timeout: Duration) -> Result<Vec<u8>, FetchError> {
        if let Some(path) = location.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            return tokio::fs::read(path)
                .await
                .map_err(|e| FetchError::Other(format!("cannot read {path}: {e}")));
        }
        let fut = async {
            let r = self
                .client
                .get(location)
                .send()
                .await
                .map_err(|e| classify(e, timeout))?;
            read_limited(r, MAX_CRL_BYTES, timeout).await
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }
}
