//! Network interfaces: the address of `rpc_interface`, found as Cassandra
//! finds it (`getifaddrs(3)`, the first address of the preferred family,
//! else the first address).

use std::net::IpAddr;

/// The addresses of interface `name`, in the order the kernel lists them.
/// `Err` when there is no such interface.
pub fn addresses(name: &str) -> Result<Vec<IpAddr>, String> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated into
    // `head`, or returns -1 and writes nothing; the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(format!("getifaddrs: {}", std::io::Error::last_os_error()));
    }
    let mut found = false;
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet
        // freed; its `ifa_name` is a NUL-terminated string and `ifa_addr`
        // is null or points at a sockaddr of the family it names.
        let (ifa_name, addr, next) = unsafe { ((*cur).ifa_name, (*cur).ifa_addr, (*cur).ifa_next) };
        // SAFETY: as above, ifa_name is a valid C string while the list lives.
        let this = unsafe { std::ffi::CStr::from_ptr(ifa_name) };
        if this.to_bytes() == name.as_bytes() {
            found = true;
            if !addr.is_null() {
                // SAFETY: sa_family says which sockaddr `addr` points at, so
                // the casts read a structure of the size the kernel wrote.
                unsafe {
                    match i32::from((*addr).sa_family) {
                        libc::AF_INET => {
                            let a = &*(addr as *const libc::sockaddr_in);
                            out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                        }
                        libc::AF_INET6 => {
                            let a = &*(addr as *const libc::sockaddr_in6);
                            out.push(IpAddr::from(a.sin6_addr.s6_addr));
                        }
                        _ => {}
                    }
                }
            }
        }
        cur = next;
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    if !found {
        return Err("no such interface".into());
    }
    Ok(out)
}

/// Cassandra's choice among an interface's addresses: the first of the
/// preferred family (IPv6 with `rpc_interface_prefer_ipv6`), else the first.
pub fn pick(addrs: &[IpAddr], prefer_v6: bool) -> Option<IpAddr> {
    addrs
        .iter()
        .find(|a| a.is_ipv6() == prefer_v6)
        .or_else(|| addrs.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_its_address() {
        let lo = addresses("lo").unwrap();
        assert!(lo.contains(&IpAddr::from([127, 0, 0, 1])), "{lo:?}");
        assert!(addresses("no-such-if0")
            .unwrap_err()
            .contains("no such interface"));
    }

    #[test]
    fn picks_as_cassandra_does() {
        let v4: IpAddr = "10.0.0.5".parse().unwrap();
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert_eq!(pick(&[v6, v4], false), Some(v4));
        assert_eq!(pick(&[v4, v6], true), Some(v6));
        assert_eq!(pick(&[v4], true), Some(v4));
        assert_eq!(pick(&[v6], false), Some(v6));
        assert_eq!(pick(&[], false), None);
    }
}
