//! Who a command runs as: an image's `User` ("name", "uid", "name:group" or "uid:gid", as
//! Docker takes it) resolved against the guest's own /etc/passwd and /etc/group.

use tonic::Status;

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: String,
}

impl Identity {
    pub fn root() -> Self {
        Self {
            uid: 0,
            gid: 0,
            name: "root".into(),
            home: "/root".into(),
        }
    }
}

/// Resolves `spec` with the given passwd and group files' contents.
pub fn resolve_in(spec: &str, passwd: &str, group: &str) -> Result<Identity, Status> {
    if spec.is_empty() {
        return Ok(Identity::root());
    }
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && (f[0] == user || f[2] == user)).then(|| {
            (
                f[0].to_string(),
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let mut id = match entry {
        Some((name, Some(uid), Some(gid), home)) => Identity {
            uid,
            gid,
            name,
            home,
        },
        _ => match user.parse::<u32>() {
            Ok(uid) => Identity {
                uid,
                gid: uid,
                name: user.to_string(),
                home: "/".into(),
            },
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "user {user:?} is not in the guest's /etc/passwd"
                )))
            }
        },
    };
    if let Some(g) = grp {
        id.gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "group {g:?} is not in the guest's /etc/group"
                    ))
                })?,
        };
    }
    Ok(id)
}

/// Resolves `spec` against the guest's files.
pub fn resolve(spec: &str) -> Result<Identity, Status> {
    if spec.is_empty() {
        return Ok(Identity::root());
    }
    let read = |p| std::fs::read_to_string(p).unwrap_or_default();
    resolve_in(spec, &read("/etc/passwd"), &read("/etc/group"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:\n";

    #[test]
    fn users_resolve_like_docker() {
        assert_eq!(resolve_in("", PASSWD, GROUP).unwrap(), Identity::root());
        let app = resolve_in("app", PASSWD, GROUP).unwrap();
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(resolve_in("1000", PASSWD, GROUP).unwrap().name, "app");
        let staff = resolve_in("app:staff", PASSWD, GROUP).unwrap();
        assert_eq!((staff.uid, staff.gid), (1000, 50));
        let numeric = resolve_in("4242:7", PASSWD, GROUP).unwrap();
        assert_eq!((numeric.uid, numeric.gid), (4242, 7));
        assert!(resolve_in("nobody-here", PASSWD, GROUP).is_err());
        assert!(resolve_in("app:nogroup", PASSWD, GROUP).is_err());
    }
}
