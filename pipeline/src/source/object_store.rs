//! Object storage as a [`ByteSource`]: `s3://`, `gs://`, `az://` and `http(s)://` URLs,
//! read through the `object_store` crate.
//!
//! - **Credentials and endpoints** come only from each cloud's standard environment
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP` ...; `GOOGLE_*`; `AZURE_*`), read
//!   by the crate's `from_env` builders. Nothing here logs or formats them. An
//!   `AWS_ENDPOINT_URL` that starts with `http://` (a local S3 server) is allowed plain HTTP.
//! - **Retries** with exponential backoff and jitter on transient errors, the body of a
//!   download included (resumed from the byte it stopped at): the crate's
//!   [`RetryConfig`], tuned by `data.io_retries` and `data.io_retry_timeout_s`
//!   ([`configure_retries`]).
//! - **Streaming**: [`ByteSource::open`] starts the download and returns at once; a task on
//!   a small shared runtime pulls the body into a bounded queue of chunks that the reader
//!   thread drains, so text is decoded while the rest downloads and an object is never
//!   held whole.
//! - **Globs** (`s3://bucket/c4/en/*.json.gz`) are expanded by listing the literal prefix
//!   before the first glob character; `*` does not cross `/`, `**` does.
//!
//! The stores are built once per `scheme://bucket` (or host) and shared, so their
//! connection pools are reused by every file and thread.

use std::collections::HashMap;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use ::object_store::azure::MicrosoftAzureBuilder;
use ::object_store::gcp::GoogleCloudStorageBuilder;
use ::object_store::http::HttpBuilder;
use ::object_store::path::Path as ObjectPath;
use ::object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

use super::byte_source::{is_glob, ByteSource};
use super::location::Location;
use crate::error::{PipelineError, Result};

/// The URL schemes this source reads.
pub const SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "abfs", "abfss", "http", "https"];

/// Default `data.io_retries`: retries of a failed request (the crate's default).
pub const DEFAULT_IO_RETRIES: usize = 10;

/// Default `data.io_retry_timeout_s`: no retry starts this long after the first attempt.
pub const DEFAULT_IO_RETRY_TIMEOUT_S: f64 = 180.0;

/// Body chunks (of the HTTP client's size, about 16 KiB) queued ahead of the reader.
const PREFETCH_CHUNKS: usize = 256;

/// How requests are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Retries of a failed request (0: none).
    pub retries: usize,
    /// No retry starts this many seconds after the first attempt.
    pub timeout_s: f64,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            retries: DEFAULT_IO_RETRIES,
            timeout_s: DEFAULT_IO_RETRY_TIMEOUT_S,
        }
    }
}

impl RetrySettings {
    fn config(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: self.retries,
            retry_timeout: Duration::from_secs_f64(self.timeout_s.max(0.0)),
        }
    }
}

/// The shared stores by `scheme://authority`, and the retry settings and environment they
/// were built with.
struct Registry {
    retry: RetrySettings,
    /// A hash of the cloud environment variables ([`environment`]).
    environment: u64,
    stores: HashMap<String, Arc<dyn ObjectStore>>,
}

/// A hash of the environment variables the stores are built from (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`): a store is rebuilt when they change. Only the hash is kept.
fn environment() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(key, _)| {
            ["AWS_", "GOOGLE_", "AZURE_"]
                .iter()
                .any(|p| key.starts_with(p))
        })
        .collect();
    vars.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    vars.hash(&mut hasher);
    hasher.finish()
}

fn registry() -> &'static Mutex<Registry> {
    static REGISTRY: OnceLock<Mutex<Registry>> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        Mutex::new(Registry {
            retry: RetrySettings::default(),
            environment: environment(),
            stores: HashMap::new(),
        })
    })
}

/// Sets the retry settings of the stores built from now on (stores built with other
/// settings are dropped and rebuilt on next use). The loader and `preprocess` call it with
/// their config's settings.
pub fn configure_retries(retry: RetrySettings) {
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    if registry.retry != retry {
        registry.retry = retry;
        registry.stores.clear();
    }
}

/// The runtime the downloads run on: two named worker threads, shared by every store.
fn runtime() -> Result<&'static Runtime> {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("electra-io")
        .enable_all()
        .build()
        .map_err(|source| PipelineError::Io {
            path: "(object store runtime)".into(),
            source,
        })?;
    Ok(RUNTIME.get_or_init(|| runtime))
}

/// A URL split into its store (`scheme://authority`, the scheme lowercase) and the object
/// key.
struct ObjectUrl<'a> {
    scheme: String,
    base: String,
    key: &'a str,
}

impl<'a> ObjectUrl<'a> {
    fn parse(url: &'a str) -> Result<Self> {
        let invalid = || PipelineError::InvalidConfig {
            field: "files",
            reason: format!("`{url}` is not a URL of the form scheme://bucket/key"),
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let authority_len = rest.find('/').unwrap_or(rest.len());
        if authority_len == 0 {
            return Err(invalid());
        }
        let scheme = scheme.to_ascii_lowercase();
        Ok(Self {
            base: format!("{scheme}://{}", &rest[..authority_len]),
            scheme,
            key: rest[authority_len..].trim_start_matches('/'),
        })
    }

    fn path(&self, url: &str) -> Result<ObjectPath> {
        ObjectPath::parse(self.key).map_err(|e| object_error(url, e.into()))
    }
}

fn object_error(url: &str, source: ::object_store::Error) -> PipelineError {
    PipelineError::ObjectStore {
        url: url.to_string(),
        source: Box::new(source),
    }
}

/// reqwest is built without a TLS provider of its own: ring's is installed as the
/// process's provider before the first client is built (unless one is installed already).
fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // ring's provider is deprecated for lacking post-quantum key exchange; the other,
        // aws-lc-rs, needs a C toolchain and cmake to build.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the store of `base` (`scheme://authority`) from the environment.
fn build_store(scheme: &str, base: &str, retry: &RetrySettings) -> Result<Arc<dyn ObjectStore>> {
    install_tls_provider();
    let retry = retry.config();
    let built: ::object_store::Result<Arc<dyn ObjectStore>> = match scheme {
        "s3" | "s3a" => {
            let builder = AmazonS3Builder::from_env().with_url(base).with_retry(retry);
            let plain_http = builder
                .get_config_value(&AmazonS3ConfigKey::Endpoint)
                .is_some_and(|endpoint| endpoint.starts_with("http://"));
            let builder = if plain_http {
                builder.with_allow_http(true)
            } else {
                builder
            };
            builder.build().map(|s| Arc::new(s) as _)
        }
        "gs" => GoogleCloudStorageBuilder::from_env()
            .with_url(base)
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        "az" | "abfs" | "abfss" => MicrosoftAzureBuilder::from_env()
            .with_url(base)
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
        _ => HttpBuilder::new()
            .with_url(base)
            .with_client_options(ClientOptions::new().with_allow_http(scheme == "http"))
            .with_retry(retry)
            .build()
            .map(|s| Arc::new(s) as _),
    };
    built.map_err(|source| object_error(base, source))
}

/// The shared store of `base`, built on first use (and again after the environment
/// changed).
fn store(scheme: &str, base: &str) -> Result<Arc<dyn ObjectStore>> {
    let environment = environment();
    let mut registry = registry().lock().unwrap_or_else(|e| e.into_inner());
    if registry.environment != environment {
        registry.environment = environment;
        registry.stores.clear();
    }
    if let Some(store) = registry.stores.get(base) {
        return Ok(store.clone());
    }
    let store = build_store(scheme, base, &registry.retry)?;
    registry.stores.insert(base.to_string(), store.clone());
    Ok(store)
}

/// Files in object storage, or on an HTTP(S) server.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectStoreFiles;

/// The URL text of a location; a local path is refused, naming it.
fn url_of(location: &Location) -> Result<&str> {
    match location {
        Location::Url { url, .. } => Ok(url),
        Location::Local(path) => Err(PipelineError::InvalidConfig {
            field: "files",
            reason: format!("`{}` is a local path, not a URL", path.display()),
        }),
    }
}

/// The store and object path of `location`.
fn resolve(location: &Location) -> Result<(&str, Arc<dyn ObjectStore>, ObjectPath)> {
    let url = url_of(location)?;
    let parsed = ObjectUrl::parse(url)?;
    let store = store(&parsed.scheme, &parsed.base)?;
    Ok((url, store, parsed.path(url)?))
}

impl ByteSource for ObjectStoreFiles {
    fn open(&self, location: &Location) -> Result<Box<dyn Read + Send>> {
        let (url, store, path) = resolve(location)?;
        let runtime = runtime()?;
        let body = runtime
            .block_on(store.get(&path))
            .map_err(|e| object_error(url, e))?
            .into_stream();
        let (sender, chunks) = mpsc::channel(PREFETCH_CHUNKS);
        let pump = runtime.spawn(async move {
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                if sender.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Box::new(ObjectReader {
            chunks,
            current: Bytes::new(),
            pump,
        }))
    }

    fn size(&self, location: &Location) -> Result<u64> {
        let (url, store, path) = resolve(location)?;
        let meta = runtime()?
            .block_on(store.head(&path))
            .map_err(|e| object_error(url, e))?;
        Ok(meta.size)
    }

    fn read_range(&self, location: &Location, range: Range<u64>) -> Result<Vec<u8>> {
        let (url, store, path) = resolve(location)?;
        let bytes = runtime()?
            .block_on(store.get_range(&path, range))
            .map_err(|e| object_error(url, e))?;
        Ok(bytes.to_vec())
    }

    fn expand(&self, pattern: &str) -> Result<Vec<Location>> {
        let parsed = ObjectUrl::parse(pattern)?;
        let store = store(&parsed.scheme, &parsed.base)?;
        let runtime = runtime()?;
        if !is_glob(parsed.key) {
            runtime
                .block_on(store.head(&parsed.path(pattern)?))
                .map_err(|e| object_error(pattern, e))?;
            return Ok(vec![Location::parse(pattern)]);
        }
        let keys = runtime.block_on(list_matching(&*store, parsed.key, pattern))?;
        if keys.is_empty() {
            return Err(PipelineError::NoFiles {
                pattern: pattern.to_string(),
            });
        }
        Ok(keys
            .iter()
            .map(|key| Location::parse(&format!("{}/{key}", parsed.base)))
            .collect())
    }
}

/// The keys under the literal prefix of `key_pattern` that match it, sorted.
async fn list_matching(
    store: &dyn ObjectStore,
    key_pattern: &str,
    url: &str,
) -> Result<Vec<String>> {
    let matcher = glob::Pattern::new(key_pattern).map_err(|e| PipelineError::InvalidConfig {
        field: "files",
        reason: format!("`{url}` is not a valid glob: {e}"),
    })?;
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let glob_at = key_pattern
        .find(['*', '?', '['])
        .unwrap_or(key_pattern.len());
    let prefix = key_pattern[..glob_at]
        .rsplit_once('/')
        .map(|(dir, _)| ObjectPath::from(dir));
    let mut listing = store.list(prefix.as_ref());
    let mut keys = Vec::new();
    while let Some(meta) = listing.next().await {
        let key = meta.map_err(|e| object_error(url, e))?.location.to_string();
        if matcher.matches_with(&key, options) {
            keys.push(key);
        }
    }
    keys.sort();
    Ok(keys)
}

/// An object's body as a [`Read`], fed by the download task through a bounded queue.
struct ObjectReader {
    chunks: mpsc::Receiver<::object_store::Result<Bytes>>,
    current: Bytes,
    pump: tokio::task::JoinHandle<()>,
}

/// A download that failed after its retries, as the reader's `io::Error` carries it (the
/// location is added by whoever reports it). Decoders pass it through, so a compressed
/// object cut off by the network is a read failure, not damage.
#[derive(Debug, thiserror::Error)]
#[error("download failed: {0}")]
pub struct DownloadFailed(#[source] pub ::object_store::Error);

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(io::Error::other(DownloadFailed(e))),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

impl Drop for ObjectReader {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_store_and_key() {
        let url = ObjectUrl::parse("S3://bucket/c4/en/part-1.json.gz").unwrap();
        assert_eq!(
            (url.scheme.as_str(), url.base.as_str(), url.key),
            ("s3", "s3://bucket", "c4/en/part-1.json.gz")
        );
        let url = ObjectUrl::parse("http://127.0.0.1:8080/a/b.txt").unwrap();
        assert_eq!(
            (url.base.as_str(), url.key),
            ("http://127.0.0.1:8080", "a/b.txt")
        );
        assert!(ObjectUrl::parse("s3:///key").is_err());
    }
}
