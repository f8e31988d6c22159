//! Pages of list answers: `page_size` items after the place `page_token` marks. A token is
//! the last item's sort key, hex-encoded: the next page starts after that key even if the
//! item itself is gone by then, so paging through a list that changes skips and repeats
//! nothing that stayed.

use tonic::Status;

/// Most items one page holds, whatever `page_size` asks.
const MAX_PAGE: usize = 1000;

/// `items` in the order of `key` (ascending, unique), cut to the page that `size` (0: all)
/// and `token` ask for, and the token of the next page ("" when this is the last).
pub fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    size: i32,
    token: &str,
) -> Result<(Vec<T>, String), Status> {
    if size < 0 {
        return Err(Status::invalid_argument("page_size must not be negative"));
    }
    items.sort_by_cached_key(|i| key(i));
    if !token.is_empty() {
        let after = hex::decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Status::invalid_argument("page_token is not one this server gave"))?;
        items.retain(|i| key(i) > after);
    }
    let size = match size as usize {
        0 if token.is_empty() => return Ok((items, String::new())),
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    };
    if items.len() <= size {
        return Ok((items, String::new()));
    }
    items.truncate(size);
    let next = items
        .last()
        .map(|i| hex::encode(key(i)))
        .unwrap_or_default();
    Ok((items, next))
}

/// A sort key that puts larger numbers first (newest first for times), then `tie`.
pub fn descending(n: u64, tie: &str) -> String {
    format!("{:020}{tie}", u64::MAX - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("vm-{i:02}")).collect()
    }

    #[test]
    fn pages_walk_the_whole_list_once() {
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = page(names(7), |s| s.clone(), 3, &token).unwrap();
            assert!(page.len() <= 3);
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, names(7));
    }

    #[test]
    fn a_gone_item_does_not_lose_the_place() {
        let (first, token) = page(names(5), |s| s.clone(), 2, "").unwrap();
        assert_eq!(first, ["vm-00", "vm-01"]);
        // vm-01 is deleted before the next page is asked for.
        let mut left = names(5);
        left.retain(|n| n != "vm-01");
        let (second, _) = page(left, |s| s.clone(), 2, &token).unwrap();
        assert_eq!(second, ["vm-02", "vm-03"]);
    }

    #[test]
    fn no_size_is_everything_and_bad_input_is_refused() {
        assert_eq!(
            page(names(3), |s| s.clone(), 0, "").unwrap(),
            (names(3), String::new())
        );
        assert!(page(names(3), |s| s.clone(), -1, "").is_err());
        assert!(page(names(3), |s| s.clone(), 1, "zz").is_err());
        assert!(descending(5, "a") < descending(4, "a"), "newest first");
    }
}
