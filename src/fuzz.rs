//! Fuzz targets for what this library checks at the edge: names, labels and network policy
//! rules. Each is a bolero target: `cargo test` runs it for about a second with random
//! inputs; `BOLERO_RANDOM_TEST_TIME_MS=600000 cargo test -p noid fuzz_` runs longer, and
//! `cargo bolero test` runs it under libFuzzer (see the README).

use crate::names::{self, NameError, MAX_LABEL_LEN, MAX_NAME_LEN};
use crate::netpolicy::{NetPolicy, Rule};

/// Longest error message any input may produce: the fixed text plus a shortened echo of the
/// input (41 characters, each at most 10 when escaped).
const MAX_MESSAGE: usize = 700;

#[test]
fn fuzz_names() {
    bolero::check!().with_type::<String>().for_each(|s| {
        match names::validate_name("VM", s) {
            // Whatever passes is safe as one path component and as a key.
            Ok(()) => {
                assert!(!s.is_empty() && s.len() <= MAX_NAME_LEN);
                assert!(!s.contains('/') && !s.contains('\0') && s != "." && s != "..");
                assert!(!s.starts_with('-'));
                assert!(std::path::Path::new(s).components().count() == 1);
            }
            Err(e) => assert!(e.to_string().len() < MAX_MESSAGE, "{e}"),
        }
        match names::validate_label(s) {
            Ok(()) => assert!(s.chars().count() <= MAX_LABEL_LEN),
            Err(e) => assert_eq!(e, NameError::BadLabel),
        }
        let short = names::shorten(s);
        assert!(short.chars().count() <= 41);
        assert!(s.starts_with(short.trim_end_matches('…')));
    });
}

#[test]
fn fuzz_policy_rules() {
    bolero::check!()
        .with_type::<String>()
        .for_each(|s| match s.parse::<Rule>() {
            // What parses prints in a form that parses back to the same rule.
            Ok(rule) => {
                let again: Rule = rule.to_string().parse().expect("a printed rule parses");
                assert_eq!(again, rule);
                if let Some((lo, hi)) = rule.ports {
                    assert!(lo >= 1 && lo <= hi);
                }
            }
            Err(e) => assert!(e.to_string().len() < MAX_MESSAGE, "{e}"),
        });
}

/// Rules built from parts, so that most of them are near the valid forms.
#[test]
fn fuzz_policy_rule_forms() {
    bolero::check!()
        .with_type::<([u8; 4], Option<u8>, Option<(u16, Option<u16>)>)>()
        .for_each(|(addr, prefix, ports)| {
            let mut s = std::net::Ipv4Addr::from(*addr).to_string();
            if let Some(p) = prefix {
                s.push_str(&format!("/{}", p % 40));
            }
            match ports {
                Some((lo, Some(hi))) => s.push_str(&format!(":{lo}-{hi}")),
                Some((lo, None)) => s.push_str(&format!(":{lo}")),
                None => {}
            }
            if let Ok(rule) = s.parse::<Rule>() {
                assert_eq!(rule.to_string().parse::<Rule>().unwrap(), rule);
                assert!(rule.net.trunc() == rule.net);
            }
        });
}

#[test]
fn fuzz_policies() {
    bolero::check!()
        .with_type::<(Vec<String>, Vec<String>, bool)>()
        .for_each(|(allow, deny, isolated)| {
            let parsed = NetPolicy::parse(Default::default(), allow, deny, *isolated);
            if let Ok(p) = parsed {
                // The policy survives the API's form and the store's form unchanged.
                let back = NetPolicy::from_proto(&p.to_proto(), Default::default()).unwrap();
                assert_eq!(back, p);
                let json = serde_json::to_vec(&p).unwrap();
                assert_eq!(serde_json::from_slice::<NetPolicy>(&json).unwrap(), p);
            }
        });
}
