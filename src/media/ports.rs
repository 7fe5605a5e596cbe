//! The UDP ports RTP may use: an allocator over a configured range, shared by all calls.
//!
//! Owns only choosing and binding ports. Even ports only (RFC 3550 §11: RTP on the even port,
//! its odd neighbour left for RTCP), rotating through the range so a port just released is not
//! handed out again at once (late packets of the previous call would land in the next one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// The range most SIP deployments open in their firewalls for media.
pub const DEFAULT_RTP_PORTS: (u16, u16) = (10000, 20000);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortRangeError {
    #[error("RTP port range {first}-{last} holds no even port")]
    NoEvenPort { first: u16, last: u16 },
}

#[derive(Debug)]
pub struct RtpPorts {
    /// The lowest even port of the range.
    base: u16,
    /// Even ports in the range.
    count: u32,
    /// Rotates over `0..count`; shared by every call task.
    next: AtomicU32,
}

impl Default for RtpPorts {
    fn default() -> Self {
        // The default range has even ports by construction.
        RtpPorts::from_even_base(DEFAULT_RTP_PORTS.0, 5001)
    }
}

impl RtpPorts {
    /// Ports `first..=last` (inclusive); odd ends are rounded inward to even RTP ports.
    pub fn new(first: u16, last: u16) -> Result<RtpPorts, PortRangeError> {
        let base = u32::from(first) + u32::from(first % 2);
        let top = u32::from(last) - u32::from(last % 2);
        if first == 0 || base > top || base > u32::from(u16::MAX) {
            return Err(PortRangeError::NoEvenPort { first, last });
        }
        Ok(RtpPorts::from_even_base(base as u16, (top - base) / 2 + 1))
    }

    fn from_even_base(base: u16, count: u32) -> RtpPorts {
        RtpPorts {
            base,
            count,
            // Start somewhere random so a restarted daemon does not reuse the ports of the
            // calls it just dropped.
            next: AtomicU32::new(rand::random::<u32>() % count),
        }
    }

    /// How many RTP ports the range holds: the ceiling of concurrent media sessions.
    pub fn capacity(&self) -> u32 {
        self.count
    }

    /// Binds the next free even port on `ip`, skipping ports in use by anyone; fails with
    /// `AddrInUse` when every port of the range is taken. Must run inside a tokio runtime.
    pub fn bind(&self, ip: IpAddr) -> io::Result<UdpSocket> {
        UdpSocket::from_std(self.bind_std(ip)?)
    }

    /// [`bind`](RtpPorts::bind) as a non-blocking std socket, for callers that also send on
    /// it directly (a `try_clone`), outside tokio's readiness tracking.
    pub fn bind_std(&self, ip: IpAddr) -> io::Result<std::net::UdpSocket> {
        self.bind_next(ip, false).map(|(rtp, _)| rtp)
    }

    /// An even RTP port and its odd neighbour for RTCP (RFC 3550 §11: a peer that says nothing
    /// else sends RTCP to RTP port + 1), both non-blocking; pairs with either port in use are skipped.
    pub fn bind_pair_std(
        &self,
        ip: IpAddr,
    ) -> io::Result<(std::net::UdpSocket, std::net::UdpSocket)> {
        let (rtp, rtcp) = self.bind_next(ip, true)?;
        let rtcp = rtcp.ok_or_else(|| io::Error::other("RTCP port not bound"))?;
        Ok((rtp, rtcp))
    }

    fn bind_next(
        &self,
        ip: IpAddr,
        with_rtcp: bool,
    ) -> io::Result<(std::net::UdpSocket, Option<std::net::UdpSocket>)> {
        for _ in 0..self.count {
            let index = self.next.fetch_add(1, Ordering::Relaxed) % self.count;
            let port = u32::from(self.base) + 2 * index;
            // count and base come from a u16 range, so the port fits.
            let port = port as u16;
            let rtp = match bind_nonblocking(SocketAddr::new(ip, port)) {
                Ok(socket) => socket,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                // Wrong address, no permission: every port would fail the same way.
                Err(e) => return Err(e),
            };
            if !with_rtcp {
                return Ok((rtp, None));
            }
            // The top of the range is 65534 at most, so its neighbour exists.
            match bind_nonblocking(SocketAddr::new(ip, port + 1)) {
                Ok(rtcp) => return Ok((rtp, Some(rtcp))),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "no free RTP port in {}-{} on {ip}",
                self.base,
                u32::from(self.base) + 2 * (self.count - 1)
            ),
        ))
    }
}

fn bind_nonblocking(address: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(address)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn ranges_round_to_even_ports() {
        let ports = RtpPorts::new(10001, 10010).unwrap();
        assert_eq!((ports.base, ports.capacity()), (10002, 5));
        assert_eq!(RtpPorts::new(4000, 4000).unwrap().capacity(), 1);
        assert_eq!(RtpPorts::default().capacity(), 5001);
        assert!(RtpPorts::new(4001, 4001).is_err());
        assert!(RtpPorts::new(5000, 4000).is_err());
        assert!(RtpPorts::new(0, 10).is_err());
        assert_eq!(RtpPorts::new(65534, 65535).unwrap().capacity(), 1);
    }

    /// An even port nobody on this machine is using right now.
    fn free_even_port() -> u16 {
        (41000..60000)
            .step_by(2)
            .find(|port| std::net::UdpSocket::bind((LOCALHOST, *port)).is_ok())
            .expect("some free even port on loopback")
    }

    #[tokio::test]
    async fn binds_even_ports_rotating_and_reports_exhaustion() {
        let first = free_even_port();
        let ports = RtpPorts::new(first, first).unwrap();
        let socket = ports.bind(LOCALHOST).unwrap();
        assert_eq!(socket.local_addr().unwrap().port(), first);
        let error = ports.bind(LOCALHOST).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        assert!(
            error.to_string().contains(&format!("{first}-{first}")),
            "{error}"
        );
        drop(socket);
        assert_eq!(
            ports.bind(LOCALHOST).unwrap().local_addr().unwrap().port(),
            first
        );
    }

    #[tokio::test]
    async fn ports_in_use_elsewhere_are_skipped() {
        let first = free_even_port();
        let ports = RtpPorts::new(first, first + 40).unwrap();
        let mut bound = Vec::new();
        // Occupy a port of the range from outside, as another process would.
        let outsider = std::net::UdpSocket::bind((LOCALHOST, first + 2)).ok();
        while let Ok(socket) = ports.bind(LOCALHOST) {
            let port = socket.local_addr().unwrap().port();
            assert_eq!(port % 2, 0);
            assert!((first..=first + 40).contains(&port));
            bound.push(socket);
            assert!(bound.len() <= 21, "never more sockets than even ports");
        }
        let expected = if outsider.is_some() { 20 } else { 21 };
        // Others running tests may hold a port of the range too; never more than the range.
        assert!(bound.len() <= expected && !bound.is_empty());
    }

    #[tokio::test]
    async fn a_pair_is_an_even_port_and_its_neighbour_and_busy_neighbours_are_skipped() {
        let first = free_even_port();
        let ports = RtpPorts::new(first, first + 2).unwrap();
        // Someone holds the odd port of one pair: that pair cannot carry RTCP.
        let outsider = std::net::UdpSocket::bind((LOCALHOST, first + 1)).ok();
        let (rtp, rtcp) = ports.bind_pair_std(LOCALHOST).unwrap();
        let port = rtp.local_addr().unwrap().port();
        assert_eq!(rtcp.local_addr().unwrap().port(), port + 1);
        if outsider.is_some() {
            assert_eq!(port, first + 2);
        }
    }
}
