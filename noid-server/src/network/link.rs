//! Links and routes over rtnetlink: the bridge with the gateway address, TAPs attached to it,
//! their removal, and the host's routes (to refuse a pool that overlaps one).

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, RouteMessageBuilder};

use super::pool::Cidr;
use super::NetError;

fn nl(context: &str) -> impl Fn(rtnetlink::Error) -> NetError + '_ {
    move |e| NetError::Netlink(format!("{context}: {e}"))
}

pub fn connect() -> Result<Handle, NetError> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| NetError::Netlink(format!("netlink: {e}")))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The index of link `name`, if it exists.
pub async fn index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl("looking up a link")(e)),
    }
}

/// Names of all links.
pub async fn names(handle: &Handle) -> Result<Vec<String>, NetError> {
    let mut out = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(link) = links.try_next().await.map_err(nl("listing links"))? {
        for a in link.attributes {
            if let LinkAttribute::IfName(n) = a {
                out.push(n);
            }
        }
    }
    Ok(out)
}

/// The bridge's own MAC: fixed (derived from its name), locally administered. A bridge with
/// no address of its own takes the lowest of its ports', so each new TAP could change the
/// gateway's MAC under the guests' ARP caches.
pub fn bridge_mac(name: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(format!("noid bridge {name}").as_bytes());
    let mut mac = vec![0x02];
    mac.extend_from_slice(&hash[..5]);
    mac
}

/// Creates the bridge if needed, gives it its fixed MAC and the gateway address, and brings
/// it up.
pub async fn ensure_bridge(handle: &Handle, name: &str, cidr: &Cidr) -> Result<u32, NetError> {
    let idx = match index(handle, name).await? {
        Some(i) => i,
        None => {
            handle
                .link()
                .add(LinkBridge::new(name).build())
                .execute()
                .await
                .map_err(nl("creating the bridge"))?;
            index(handle, name)
                .await?
                .ok_or_else(|| NetError::Netlink(format!("bridge {name} vanished")))?
        }
    };
    let gateway = cidr.gateway();
    let mut addrs = handle.address().get().set_link_index_filter(idx).execute();
    let mut has = false;
    while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
        has |= a
            .attributes
            .iter()
            .any(|x| matches!(x, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == gateway));
    }
    if !has {
        handle
            .address()
            .add(idx, IpAddr::V4(gateway), cidr.prefix)
            .execute()
            .await
            .map_err(nl("adding the gateway address"))?;
    }
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(idx)
                .address(bridge_mac(name))
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("bringing the bridge up"))?;
    Ok(idx)
}

/// Attaches link `name` to the bridge with index `bridge` and brings it up.
pub async fn attach(handle: &Handle, name: &str, bridge: u32) -> Result<(), NetError> {
    let idx = index(handle, name)
        .await?
        .ok_or_else(|| NetError::Netlink(format!("link {name} does not exist")))?;
    handle
        .link()
        .set(
            LinkUnspec::new_with_index(idx)
                .controller(bridge)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl("attaching a TAP to the bridge"))
}

/// Deletes link `name`; a missing link is fine.
pub async fn delete(handle: &Handle, name: &str) -> Result<(), NetError> {
    if let Some(idx) = index(handle, name).await? {
        handle
            .link()
            .del(idx)
            .execute()
            .await
            .map_err(nl("deleting a link"))?;
    }
    Ok(())
}

/// Routes of the main table that overlap `cidr`, except those through link `except` (the
/// default route is no conflict), as text for an error message.
pub async fn overlapping_routes(
    handle: &Handle,
    cidr: &Cidr,
    except: Option<u32>,
) -> Result<Vec<String>, NetError> {
    let mut out = Vec::new();
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
        if r.header.table != libc::RT_TABLE_MAIN || r.header.destination_prefix_length == 0 {
            continue;
        }
        let mut dest = None;
        let mut oif = None;
        for a in &r.attributes {
            match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => dest = Some(*ip),
                RouteAttribute::Oif(i) => oif = Some(*i),
                _ => {}
            }
        }
        let Some(dest) = dest else { continue };
        if except.is_some() && oif == except {
            continue;
        }
        let route = Cidr {
            network: dest,
            prefix: r.header.destination_prefix_length,
        };
        if route.overlaps(cidr) {
            out.push(route.to_string());
        }
    }
    Ok(out)
}
