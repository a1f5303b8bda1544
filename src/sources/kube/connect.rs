//! From a context's kubeconfig to a working client, without blocking anything but this
//! cluster: the kubeconfig is read (certificate and token files) and the TLS stack built on
//! the blocking pool; a credential plugin runs as an async child process (see
//! [`credentials`](super::credentials)); the client is shared with the failover writer through
//! a [`ClientSlot`] once it exists.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::client::ClientBuilder;
use kube::config::{ExecConfig, KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::credentials::{Bearer, Credential};
use super::kubeconfig::{error_chain, USER_AGENT};

/// One context's client, once its cluster's task has built it.
#[derive(Clone, Default)]
pub struct ClientSlot(Arc<RwLock<Option<Client>>>);

impl ClientSlot {
    /// The client, or why there is none yet (credentials still being obtained, or failed).
    pub fn get(&self) -> Result<Client, String> {
        self.0.read().ok().and_then(|c| c.clone()).ok_or_else(|| {
            "no connection to this cluster yet (its credentials or client are not ready)".into()
        })
    }

    pub fn set(&self, client: Client) {
        if let Ok(mut slot) = self.0.write() {
            *slot = Some(client);
        }
    }
}

impl From<Client> for ClientSlot {
    fn from(client: Client) -> ClientSlot {
        let slot = ClientSlot::default();
        slot.set(client);
        slot
    }
}

/// A context's configuration with its credential plugin taken out (meshtop runs it).
pub struct Prepared {
    pub config: kube::Config,
    pub plugin: Option<ExecConfig>,
    /// When the client certificate of the kubeconfig expires (for a clear "expired" message).
    pub certificate_expires: Option<Timestamp>,
}

/// How long reading a kubeconfig's files and building a client may take.
const BUILD_LIMIT: Duration = Duration::from_secs(10);

/// Runs `f` on the blocking pool with a deadline: a file on a hung mount costs this cluster only.
async fn off_runtime<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(BUILD_LIMIT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!(
            "{what} took longer than {} s",
            BUILD_LIMIT.as_secs()
        )),
    }
}

/// Reads the kubeconfig of one context into a client configuration.
pub async fn prepare(context: &str, kubeconfig: Kubeconfig) -> Result<Prepared, String> {
    let context = context.to_string();
    off_runtime("reading the kubeconfig", move || {
        let options = KubeConfigOptions {
            context: Some(context),
            ..Default::default()
        };
        let handle = tokio::runtime::Handle::current();
        let mut config = handle
            .block_on(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
            .map_err(|e| format!("kubeconfig: {}", error_chain(&e)))?;
        // kube-rs sends no User-Agent: with one, an API server's audit log can tell meshtop's
        // requests from every other client's.
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(USER_AGENT),
        ));
        let plugin = config.auth_info.exec.take();
        let certificate_expires = certificate_expiry(&config.auth_info);
        Ok(Prepared {
            config,
            plugin,
            certificate_expires,
        })
    })
    .await
}

/// The expiry of the kubeconfig's client certificate, when it has one that parses.
fn certificate_expiry(auth: &kube::config::AuthInfo) -> Option<Timestamp> {
    use base64::Engine;
    let pem = match (&auth.client_certificate_data, &auth.client_certificate) {
        (Some(data), _) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .ok()?;
            String::from_utf8(bytes).ok()?
        }
        (None, Some(path)) => std::fs::read_to_string(path).ok()?,
        (None, None) => return None,
    };
    let first = crate::topology::derive::roots::parse_uncached(&pem).ok()?;
    let secs = first.first()?.not_after_secs;
    Timestamp::from_second(i64::try_from(secs).ok()?).ok()
}

/// Builds the client: the plugin's credential (if any) goes in as a client certificate, or as
/// the token of `bearer`, whose value the refresh task replaces later.
pub async fn build(
    mut config: kube::Config,
    credential: Option<&Credential>,
    bearer: &Bearer,
) -> Result<Client, String> {
    if let Some(c) = credential {
        if let Some((cert, key)) = &c.identity {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD;
            config.auth_info.client_certificate_data = Some(b64.encode(cert));
            config.auth_info.client_key_data = Some(b64.encode(key).into());
            config.auth_info.client_certificate = None;
            config.auth_info.client_key = None;
        }
        if let Some(token) = &c.token {
            bearer.set(token);
        }
    }
    let bearer = bearer.clone();
    off_runtime("building the client", move || {
        let builder = ClientBuilder::try_from(config).map_err(|e| error_chain(&e))?;
        let layer =
            tower::util::MapRequestLayer::new(move |r: http::Request<kube::client::Body>| {
                bearer.apply(r)
            });
        Ok(builder.with_layer(&layer).build())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_certificate_file_is_named_and_the_plugin_is_taken_out() {
        let yaml = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
            clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n\
            users:\n- name: u\n  user:\n    client-certificate: /nonexistent/meshtop-gone.crt\n    client-key: /nonexistent/k.key\n\
            - name: p\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/false\n\
            contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n\
            - name: e\n  context:\n    cluster: k\n    user: p\n";
        let k = Kubeconfig::from_yaml(yaml).unwrap();
        let p = prepare("c", k.clone()).await.ok().unwrap();
        let e = build(p.config, None, &Bearer::default())
            .await
            .err()
            .unwrap();
        assert!(e.contains("/nonexistent/meshtop-gone.crt"), "{e}");
        let p = prepare("e", k).await.ok().unwrap();
        assert!(p.plugin.is_some() && p.config.auth_info.exec.is_none());
    }
}
