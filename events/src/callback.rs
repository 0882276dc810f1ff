//! An order's `callback_url`, and which network targets a webhook may reach.
//!
//! The URL is a client's input that the notifier later POSTs to from inside the operator's
//! network, so two things are kept apart: [`CallbackUrl`] is the parsed shape (http(s), a
//! host, at most [`CallbackUrl::MAX_LEN`] bytes), and [`forbidden_address`] is the policy on
//! where a request may go (no loopback, private, link-local, … addresses). The event log keeps
//! the URL as the string it always was; only new requests are parsed strictly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use url::{Host, Url};

/// An absolute http(s) URL with a host, of at most 2048 bytes. Its `Debug` shows
/// [`CallbackUrl::redacted`]: a URL may carry credentials (`user:pass@`, `?token=`).
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackUrl(Url);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a callback URL is an absolute http(s) URL with a host, of at most 2048 bytes")]
pub struct CallbackUrlError;

impl CallbackUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(text: &str) -> Result<CallbackUrl, CallbackUrlError> {
        let text = text.trim();
        if text.len() > Self::MAX_LEN {
            return Err(CallbackUrlError);
        }
        let url = Url::parse(text).map_err(|_| CallbackUrlError)?;
        let has_host = match url.host() {
            Some(Host::Domain(d)) => !d.is_empty(),
            Some(_) => true,
            None => false,
        };
        if !matches!(url.scheme(), "http" | "https")
            || !has_host
            || url.as_str().len() > Self::MAX_LEN
        {
            return Err(CallbackUrlError);
        }
        Ok(CallbackUrl(url))
    }

    /// The whole URL, as it is stored and requested. Never log it: see [`Self::redacted`].
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The URL without userinfo, query or fragment: what logs and listings show.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    /// Why the URL names a private target on its face (an IP literal in a forbidden range,
    /// or `localhost`), without resolving anything; `None` when it does not.
    pub fn private_target(&self) -> Option<&'static str> {
        match self.0.host()? {
            Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                (d == "localhost" || d.ends_with(".localhost")).then_some("localhost")
            }
            Host::Ipv4(a) => forbidden_address(IpAddr::V4(a)),
            Host::Ipv6(a) => forbidden_address(IpAddr::V6(a)),
        }
    }
}

/// As its text: a command that names one travels between instances (it was checked where
/// it was taken; it reads back through [`CallbackUrl::parse`]).
impl serde::Serialize for CallbackUrl {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CallbackUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CallbackUrl::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for CallbackUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallbackUrl({})", self.redacted())
    }
}

/// The host of the URL `text` when it is an IP address literal, however loosely the URL was
/// checked when it was accepted.
pub fn ip_literal_host(text: &str) -> Option<IpAddr> {
    match Url::parse(text).ok()?.host()? {
        Host::Ipv4(a) => Some(IpAddr::V4(a)),
        Host::Ipv6(a) => Some(IpAddr::V6(a)),
        Host::Domain(_) => None,
    }
}

/// `text` without userinfo, query or fragment when it is a URL; a placeholder when it is not
/// (an unparsable string could be anything, a credential included).
pub fn redact_url(text: &str) -> String {
    match Url::parse(text) {
        Ok(u) => redact(&u),
        Err(_) => "<not a URL>".to_owned(),
    }
}

fn redact(url: &Url) -> String {
    let mut u = url.clone();
    // Neither can fail on a URL with a host, which is every http(s) URL.
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Whether a webhook may connect to `ip`: `Some(range)` names the range that forbids it.
/// Forbidden: loopback, private (RFC 1918, IPv6 unique local), link-local (cloud metadata
/// lives at 169.254.169.254), shared address space (CGNAT), unspecified and "this network",
/// multicast, broadcast, documentation, benchmarking and reserved ranges, and the IPv6 forms
/// that embed an IPv4 address (mapped, compatible, NAT64, 6to4) of one of those.
pub fn forbidden_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => forbidden_v4(a),
        IpAddr::V6(a) => forbidden_v6(a),
    }
}

fn forbidden_v4(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    if a.is_loopback() {
        Some("loopback")
    } else if a.is_private() {
        Some("private")
    } else if a.is_link_local() {
        Some("link-local")
    } else if o0 == 100 && (o1 & 0xc0) == 64 {
        Some("shared address space")
    } else if o0 == 0 {
        Some("unspecified")
    } else if a.is_broadcast() {
        Some("broadcast")
    } else if a.is_multicast() {
        Some("multicast")
    } else if a.is_documentation() {
        Some("documentation")
    } else if o0 == 192 && o1 == 0 && o2 == 0 {
        Some("IETF protocol assignments")
    } else if o0 == 198 && (o1 & 0xfe) == 18 {
        Some("benchmarking")
    } else if o0 >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn forbidden_v6(a: Ipv6Addr) -> Option<&'static str> {
    let s = a.segments();
    if a.is_loopback() {
        return Some("loopback");
    }
    if a.is_unspecified() {
        return Some("unspecified");
    }
    if a.is_multicast() {
        return Some("multicast");
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return Some("private");
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return Some("link-local");
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return Some("site-local");
    }
    if s[0] == 0x2001 && s[1] == 0x0db8 {
        return Some("documentation");
    }
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible).
    if s[..5] == [0; 5] && (s[5] == 0xffff || s[5] == 0) {
        return forbidden_v4(v4(s[6], s[7]));
    }
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they embed.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return forbidden_v4(v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return forbidden_v4(v4(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(text: &str) -> Option<&'static str> {
        forbidden_address(text.parse().unwrap())
    }

    #[test]
    fn an_http_or_https_url_with_a_host_parses_and_nothing_else_does() {
        assert!(CallbackUrl::parse("https://example.com/hook").is_ok());
        assert!(CallbackUrl::parse(" http://example.com:8080/a?b=c ").is_ok());
        for bad in [
            "ftp://example.com/x",
            "not a url",
            "http://",
            "mailto:a@example.com",
            "file:///etc/passwd",
            "/relative",
        ] {
            assert_eq!(CallbackUrl::parse(bad), Err(CallbackUrlError), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(CallbackUrl::parse(&long).is_err());
    }

    #[test]
    fn the_redacted_form_has_no_userinfo_query_or_fragment() {
        let u =
            CallbackUrl::parse("https://user:pa55@example.com:8443/cb/x?token=t0k#frag").unwrap();
        assert_eq!(u.redacted(), "https://example.com:8443/cb/x");
        let debug = format!("{u:?}");
        assert!(!debug.contains("pa55") && !debug.contains("t0k"), "{debug}");
        assert_eq!(
            redact_url("http://a:b@10.0.0.1/?q=1"),
            "http://10.0.0.1/".to_owned()
        );
        assert_eq!(redact_url("garbage secret"), "<not a URL>");
    }

    #[test]
    fn private_ipv4_ranges_are_forbidden_and_public_ones_are_not() {
        for a in [
            "127.0.0.1",
            "127.255.0.9",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
        ] {
            assert!(forbidden(a).is_some(), "{a}");
        }
        for a in [
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "169.255.0.1",
            "1.1.1.1",
        ] {
            assert_eq!(forbidden(a), None, "{a}");
        }
    }

    #[test]
    fn private_ipv6_ranges_and_embedded_private_ipv4_are_forbidden() {
        for a in [
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.2.3",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(forbidden(a).is_some(), "{a}");
        }
        for a in ["2606:4700::1111", "::ffff:8.8.8.8", "2002:0808:0808::1"] {
            assert_eq!(forbidden(a), None, "{a}");
        }
    }

    #[test]
    fn a_url_names_a_private_target_by_ip_literal_or_localhost() {
        for u in [
            "http://127.0.0.1:9/x",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            // WHATWG hosts: decimal and hex forms are IPv4 literals too.
            "http://2130706433/",
            "http://0x7f.1/",
        ] {
            let url = CallbackUrl::parse(u).unwrap();
            assert!(url.private_target().is_some(), "{u}");
        }
        for u in [
            "https://example.com/hook",
            "http://8.8.8.8/",
            "http://localhost.example/",
        ] {
            assert_eq!(CallbackUrl::parse(u).unwrap().private_target(), None, "{u}");
        }
    }
}
