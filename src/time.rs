//! Times in the API: `google.protobuf.Timestamp` (pbjson's, so JSON carries RFC 3339 strings)
//! to and from what the server keeps (seconds since the Unix epoch) and the host's clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use pbjson_types::Timestamp;

/// The Timestamp of `secs` seconds since the Unix epoch.
pub fn from_secs(secs: i64) -> Timestamp {
    Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

/// The Timestamp of a time on the host's clock.
pub fn from_system(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        },
        Err(before) => {
            let d = before.duration();
            let (mut seconds, mut nanos) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i32));
            if nanos < 0 {
                seconds -= 1;
                nanos += 1_000_000_000;
            }
            Timestamp { seconds, nanos }
        }
    }
}

/// The host-clock time of a Timestamp.
pub fn to_system(t: &Timestamp) -> SystemTime {
    let nanos = Duration::from_nanos(t.nanos.clamp(0, 999_999_999) as u64);
    if t.seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(t.seconds as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs()) + nanos
    }
}

/// Whole seconds since the Unix epoch of an optional Timestamp; 0 when absent.
pub fn secs(t: Option<&Timestamp>) -> i64 {
    t.map(|t| t.seconds).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_times_round_trip_on_both_sides_of_the_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_764_500_000, 123_456_789),
            UNIX_EPOCH - Duration::new(5, 250_000_000),
            UNIX_EPOCH,
        ] {
            let ts = from_system(t);
            assert!((0..1_000_000_000).contains(&ts.nanos), "{ts:?}");
            assert_eq!(to_system(&ts), t);
        }
        assert_eq!(from_secs(7).seconds, 7);
        assert_eq!(secs(None), 0);
    }

    #[test]
    fn json_is_rfc3339() {
        let json = serde_json::to_string(&from_secs(1_764_500_000)).unwrap();
        assert_eq!(json, "\"2025-11-30T10:53:20+00:00\"");
    }
}
