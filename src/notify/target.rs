//! Where a webhook may go. A client's `callback_url` is POSTed from inside the operator's
//! network, so it must not reach loopback, private or link-local services (cloud metadata at
//! 169.254.169.254 among them): [`flashrent_events::forbidden_address`] says which addresses.
//!
//! The check is made on the addresses the connection is made to, not on an earlier lookup:
//! the client's resolver ([`PublicOnly`]) drops forbidden addresses from what the system
//! resolver returns and fails the lookup when none remain, so a name that resolves elsewhere
//! a second time (DNS rebinding) cannot slip through. Address literals never reach a
//! resolver; [`literal_refusal`] checks them before the request.

use flashrent_events::{forbidden_address, ip_literal_host};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A name that resolved only to forbidden addresses. Found again in a request's error chain
/// ([`refusal_in`]) to dead-letter the delivery at once.
#[derive(Debug, thiserror::Error)]
#[error("the target resolves to a private address ({range}): not contacted")]
pub struct PrivateTarget {
    range: &'static str,
}

/// The system resolver, keeping only addresses a webhook may reach.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // The port is replaced by the URL's own.
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match forbidden_address(a.ip()) {
                    Some(range) => {
                        refused.get_or_insert(range);
                        false
                    }
                    None => true,
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(range)) => Err(Box::new(PrivateTarget { range }) as _),
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}

/// A client for webhooks: no redirects, no proxy from the environment, and with
/// `public_only` the [`PublicOnly`] resolver.
pub fn client(timeout: Duration, public_only: bool) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("flashrent-notify/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy();
    if public_only {
        builder.dns_resolver(Arc::new(PublicOnly)).build()
    } else {
        builder.build()
    }
}

/// Why a delivery to `url` is refused before any lookup: its host is an address literal in a
/// forbidden range. (A URL of an older record is read as it was accepted then; one that does
/// not parse fails in the client, like any bad request.)
pub fn literal_refusal(url: &str) -> Option<String> {
    forbidden_address(ip_literal_host(url)?)
        .map(|range| format!("the target is a private address ({range}): not contacted"))
}

/// The refusal of [`PublicOnly`] in a request's error, if that is why it failed.
pub fn refusal_in(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(p) = s.downcast_ref::<PrivateTarget>() {
            return Some(p.to_string());
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_that_resolves_only_to_loopback_is_refused() {
        let err = match PublicOnly.resolve("localhost".parse().unwrap()).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<PrivateTarget>().is_some(), "{err}");
    }

    #[test]
    fn address_literals_are_checked_before_any_request() {
        assert!(literal_refusal("http://169.254.169.254/latest/meta-data").is_some());
        assert!(literal_refusal("http://[::ffff:10.0.0.1]:8080/").is_some());
        assert_eq!(literal_refusal("http://8.8.8.8/"), None);
        assert_eq!(literal_refusal("https://example.com/hook"), None);
    }
}
