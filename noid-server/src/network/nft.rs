//! Runs `nft`: loads a whole ruleset (the text `firewall` makes) in one transaction, so the
//! rules are never half-applied, and removes noid's tables. No other table is touched.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::firewall::table;
use super::NetError;

/// Loads `script` with `nft -f -`: all of it, or nothing.
pub async fn load(script: &str) -> Result<(), NetError> {
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Firewall(format!("cannot run nft (install nftables): {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(script.as_bytes())
        .await
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    if !out.status.success() {
        return Err(NetError::Firewall(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// Removes the bridge's tables (both families).
pub async fn remove(bridge: &str) -> Result<(), NetError> {
    let t = table(bridge);
    load(&format!(
        "table bridge {t} {{}}\ndelete table bridge {t}\ntable ip {t} {{}}\ndelete table ip {t}\n"
    ))
    .await
}

/// Asks nft whether the kernel would accept `script` (`nft -c`: nothing is loaded).
pub fn check(script: &str) -> Result<(), NetError> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::Firewall(format!("cannot run nft (install nftables): {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Firewall(e.to_string()))?;
    if !out.status.success() {
        return Err(NetError::Firewall(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}
