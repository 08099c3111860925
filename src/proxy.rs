//! Client addresses behind a load balancer: the PROXY protocol header (v1 text or v2
//! binary) that starts a connection, and `X-Forwarded-For` on HTTP requests, believed
//! only from a listener's `trusted_proxies`. The address found replaces the socket's
//! peer address in logs and in everything that checks who a client is.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use hyper::header::HeaderMap;
use ipnet::IpNet;
use ppp::{v1, v2, HeaderResult, PartialResult};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Longest PROXY header read: a v1 header is at most 107 bytes, a v2 one holds the
/// addresses and a few TLVs.
const MAX_HEADER: usize = 512;

/// How long to wait for more of a header that arrived in pieces.
const PIECE_WAIT: Duration = Duration::from_millis(5);

/// A proxy address or network in broker.toml: `"10.0.0.7"` or `"10.0.0.0/8"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProxyNetwork(IpNet);

impl TryFrom<String> for ProxyNetwork {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        IpNet::from_str(&s)
            .or_else(|_| IpAddr::from_str(&s).map(IpNet::from))
            .map(ProxyNetwork)
            .map_err(|_| format!("{s:?} is neither an IP address nor a network like 10.0.0.0/8"))
    }
}

impl From<ProxyNetwork> for String {
    fn from(network: ProxyNetwork) -> String {
        network.0.to_string()
    }
}

/// Who may tell a listener where its clients really are.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    /// Connections from these networks start with a PROXY protocol header.
    proxy_protocol: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("closed before its PROXY header")]
    Closed,
    #[error("no PROXY header: a trusted proxy must send one on this listener")]
    Missing,
    #[error("PROXY header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl TrustedProxies {
    pub fn new(networks: &[ProxyNetwork], proxy_protocol: bool) -> TrustedProxies {
        TrustedProxies {
            networks: networks.iter().map(|network| network.0).collect(),
            proxy_protocol,
        }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(&ip))
    }

    /// The client's address on a connection from `peer`: read from the PROXY header
    /// when `peer` is a trusted proxy and the listener expects one, else `peer` itself.
    /// Consumes exactly the header, nothing of what follows it.
    pub async fn client_address(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<SocketAddr, ProxyError> {
        if !self.proxy_protocol || !self.trusts(peer.ip()) {
            return Ok(peer);
        }
        let mut buf = [0u8; MAX_HEADER];
        loop {
            let seen = stream.peek(&mut buf).await?;
            if seen == 0 {
                return Err(ProxyError::Closed);
            }
            let (length, client) = match HeaderResult::parse(&buf[..seen]) {
                parsed if parsed.is_incomplete() => {
                    if seen == MAX_HEADER {
                        return Err(ProxyError::TooLong);
                    }
                    // peek returns at once while the same bytes wait: give the rest
                    // of the header time to arrive.
                    tokio::time::sleep(PIECE_WAIT).await;
                    continue;
                }
                HeaderResult::V1(Ok(header)) => (header.header.len(), from_v1(&header.addresses)),
                HeaderResult::V2(Ok(header)) => (header.len(), from_v2(&header)),
                HeaderResult::V1(Err(e)) if starts_like_v1(&buf[..seen]) => {
                    return Err(ProxyError::Invalid(e.to_string()))
                }
                HeaderResult::V2(Err(e)) if buf[..seen].starts_with(V2_SIGNATURE) => {
                    return Err(ProxyError::Invalid(e.to_string()))
                }
                _ => return Err(ProxyError::Missing),
            };
            stream.read_exact(&mut buf[..length]).await?;
            return Ok(client.unwrap_or(peer));
        }
    }

    /// The client's address for an HTTP request from `peer`: the right-most address of
    /// `X-Forwarded-For` that is not itself a trusted proxy, when `peer` is trusted;
    /// else `peer`. Addresses without a port get port 0.
    pub fn forwarded_client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
            .collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An entry that is not an address ends what can be believed.
            let Some(hop) = parse_hop(hop) else {
                break;
            };
            client = hop;
            if !self.trusts(hop.ip()) {
                break;
            }
        }
        client
    }
}

const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

fn starts_like_v1(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PROXY ")
}

/// A hop of `X-Forwarded-For`: `203.0.113.7`, `203.0.113.7:5000`, `2001:db8::1` or
/// `[2001:db8::1]:5000`.
fn parse_hop(hop: &[u8]) -> Option<SocketAddr> {
    let hop = std::str::from_utf8(hop).ok()?.trim();
    SocketAddr::from_str(hop)
        .ok()
        .or_else(|| IpAddr::from_str(hop).ok().map(|ip| SocketAddr::new(ip, 0)))
}

/// The source address of a v1 header; `None` for `PROXY UNKNOWN` (the proxy's own
/// connection, such as a health check).
fn from_v1(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v1::Addresses::Unknown => None,
    }
}

/// The source address of a v2 header; `None` for the LOCAL command or an address
/// family without one.
fn from_v2(header: &v2::Header) -> Option<SocketAddr> {
    if header.command == v2::Command::Local {
        return None;
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(networks: &[&str]) -> TrustedProxies {
        let networks: Vec<ProxyNetwork> = networks
            .iter()
            .map(|n| ProxyNetwork::try_from(n.to_string()).unwrap())
            .collect();
        TrustedProxies::new(&networks, true)
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn networks_and_single_addresses_parse() {
        let proxies = trusted(&["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"]);
        assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("192.0.2.1".parse().unwrap()));
        assert!(!proxies.trusts("192.0.2.2".parse().unwrap()));
        assert!(proxies.trusts("2001:db8::5".parse().unwrap()));
        // An IPv4 peer seen on a dual-stack socket.
        assert!(proxies.trusts("::ffff:10.0.0.1".parse().unwrap()));
        assert!(ProxyNetwork::try_from("10.0.0.0/33".to_string()).is_err());
        assert!(ProxyNetwork::try_from("proxy.example".to_string()).is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let proxy: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.9:4000".parse().unwrap();
        let chain = forwarded(&["203.0.113.7, 10.0.0.5"]);
        assert_eq!(
            proxies.forwarded_client(proxy, &chain),
            "203.0.113.7:0".parse().unwrap()
        );
        assert_eq!(proxies.forwarded_client(stranger, &chain), stranger);
        // A client's forged left-most entry is not believed past an untrusted hop.
        let forged = forwarded(&["1.1.1.1", "203.0.113.7:5000"]);
        assert_eq!(
            proxies.forwarded_client(proxy, &forged),
            "203.0.113.7:5000".parse().unwrap()
        );
        assert_eq!(
            proxies.forwarded_client(proxy, &forwarded(&["[2001:db8::1]:80"])),
            "[2001:db8::1]:80".parse().unwrap()
        );
        assert_eq!(
            proxies.forwarded_client(proxy, &forwarded(&["garbage"])),
            proxy
        );
        assert_eq!(proxies.forwarded_client(proxy, &HeaderMap::new()), proxy);
    }
}
