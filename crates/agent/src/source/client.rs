//! The API client as kube-proxy configures its own: a kubeconfig
//! (`clientConnection.kubeconfig`), `--master` in place of its server, and
//! a token bucket of `qps` requests per second with bursts of `burst`
//! (client-go's client-side limit).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::Error;

/// How to reach the API server.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientSettings {
    /// A kubeconfig; else `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, in place of the kubeconfig's (`--master`).
    pub master: Option<String>,
    /// Requests per second; 0 or less for no limit.
    pub qps: f32,
    /// Requests above the rate allowed at once.
    pub burst: u32,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            kubeconfig: None,
            master: None,
            qps: 5.0,
            burst: 10,
        }
    }
}

/// A client with these settings.
pub async fn client_with(settings: &ClientSettings) -> Result<Client, Error> {
    let mut config = match &settings.kubeconfig {
        Some(path) => {
            let read_error = |source| Error::ReadKubeconfig {
                path: path.clone(),
                source,
            };
            let kubeconfig = Kubeconfig::read_from(path).map_err(read_error)?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(read_error)?
        }
        None => Config::infer().await.map_err(Error::InferConfig)?,
    };
    if let Some(master) = &settings.master {
        config.cluster_url = master
            .parse()
            .map_err(|e| Error::Master(master.clone(), e))?;
    }
    let builder = ClientBuilder::try_from(config).map_err(Error::BuildClient)?;
    Ok(if settings.qps > 0.0 {
        builder
            .with_layer(&RateLimitLayer::new(settings.qps, settings.burst))
            .build()
    } else {
        builder.build()
    })
}

/// A token bucket: `qps` tokens a second, holding at most `burst` (and at
/// least one).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

impl RateLimitLayer {
    /// A full bucket.
    pub fn new(qps: f32, burst: u32) -> Self {
        let capacity = f64::from(burst.max(1));
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: capacity,
                capacity,
                per_second: f64::from(qps),
                last: Instant::now(),
            })),
        }
    }

    /// Waits for a token and takes it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let refill = now.duration_since(b.last).as_secs_f64() * b.per_second;
                b.tokens = (b.tokens + refill).min(b.capacity);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - b.tokens) / b.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            limit: self.clone(),
        }
    }
}

/// A service whose requests start no faster than its bucket allows. The
/// inner future does nothing until polled, after the token is taken.
#[derive(Clone, Debug)]
pub struct RateLimited<S> {
    inner: S,
    limit: RateLimitLayer,
}

impl<S, R> Service<R> for RateLimited<S>
where
    S: Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let response = self.inner.call(request);
        let limit = self.limit.clone();
        Box::pin(async move {
            limit.acquire().await;
            response.await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_then_the_rate() {
        let limit = RateLimitLayer::new(5.0, 10);
        let start = Instant::now();
        for _ in 0..10 {
            limit.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst goes at once");
        for _ in 0..5 {
            limit.acquire().await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1010),
            "{waited:?}"
        );
    }
}
