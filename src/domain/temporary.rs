//! Temporary roles (DESIGN rule 7): a role granted for a window, which expires on time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::problem::{ObjectKey, Problem, Reason};
use crate::api::{RoleBinding, TemporaryAccess};

/// Where a role stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleState {
    /// Not yet in effect; it starts at the given time.
    Pending {
        /// When the role starts.
        starts: Timestamp,
        /// When it will end.
        ends: Timestamp,
    },
    /// In effect, until `until` (never, when `None`).
    Active {
        /// When the role expires, for a temporary role.
        until: Option<Timestamp>,
    },
    /// No longer in effect since the given time.
    Expired {
        /// When the role expired.
        at: Timestamp,
    },
}

impl RoleState {
    /// Whether the role grants access now.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Active { .. })
    }

    /// The next moment the state changes, to requeue at.
    pub fn next_change(self) -> Option<Timestamp> {
        match self {
            Self::Pending { starts, .. } => Some(starts),
            Self::Active { until } => until,
            Self::Expired { .. } => None,
        }
    }
}

/// A temporary window that cannot be evaluated, with the field at fault (below `temporary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowError {
    /// `start`, `end` or `duration`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Parses a Kubernetes (Go) duration such as `90m`, `1h30m`, `1.5h` or `300ms`.
pub fn parse_duration(s: &str) -> Option<SignedDuration> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_len);
        if num.is_empty()
            || num.starts_with('.')
            || num.ends_with('.')
            || num.matches('.').count() > 1
        {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        let (unit_nanos, unit_len) = [
            ("ns", 1.0, 2),
            ("us", 1e3, 2),
            ("µs", 1e3, "µs".len()),
            ("ms", 1e6, 2),
            ("s", 1e9, 1),
            ("m", 60e9, 1),
            ("h", 3600e9, 1),
        ]
        .into_iter()
        // "ms" is listed before "m", so the first match is the right unit.
        .find(|(u, _, _)| tail.starts_with(u))
        .map(|(_, n, l)| (n, l))?;
        total_nanos += value * unit_nanos;
        rest = &tail[unit_len..];
    }
    // Go caps durations at about 290 years (i64 nanoseconds); so do we.
    if !total_nanos.is_finite() || total_nanos > i64::MAX as f64 {
        return None;
    }
    Some(SignedDuration::from_nanos(total_nanos as i64))
}

/// Parses an RFC 3339 timestamp, over the whole range RFC 3339 (and the API server) accept:
/// years 0000 to 9999. The last hours of year 9999 lie past the largest instant this crate's
/// clock can hold (its bounds leave room for every UTC offset); they are taken as that instant,
/// which no temporary role will outlive.
pub fn parse_time(s: &str) -> Option<Timestamp> {
    // A leap second (`23:59:60`), which the API server's date-time format refuses (Go reads
    // none) and the parser would take as the second before.
    if s.as_bytes().get(16) == Some(&b':') && s.get(17..19) == Some("60") {
        return None;
    }
    if let Ok(t) = s.parse() {
        return Some(t);
    }
    // `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`: valid civil fields and offset, but out of range.
    let (civil, _) = civil_and_offset(s)?;
    let dt: k8s_openapi::jiff::civil::DateTime = civil.parse().ok()?;
    (civil.as_bytes().get(10) == Some(&b'T') && dt.year() == 9999).then_some(Timestamp::MAX)
}

/// An RFC 3339 time (`…(Z|±HH:MM)`) split into its civil date and time, with `T` in upper
/// case, and its offset from UTC in seconds; `None` unless the offset is `Z` or within a day.
fn civil_and_offset(s: &str) -> Option<(String, i64)> {
    let offset_at = s.rfind(['Z', 'z', '+', '-']).filter(|&i| i >= 19)?;
    let (civil, offset) = s.split_at(offset_at);
    let seconds = match offset {
        "Z" | "z" => 0,
        o if o.len() == 6 && o.as_bytes()[3] == b':' => {
            let hours = o[1..3].parse::<u8>().ok().filter(|h| *h < 24)?;
            let minutes = o[4..6].parse::<u8>().ok().filter(|m| *m < 60)?;
            let seconds = i64::from(hours) * 3_600 + i64::from(minutes) * 60;
            if o.starts_with('-') {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    Some((civil.replacen('t', "T", 1), seconds))
}

/// The last instant of the year 9999 (`9999-12-31T23:59:59.999999999Z`), the last RFC 3339
/// (and the API server) can write, in nanoseconds from the Unix epoch.
const LAST_INSTANT_NANOS: i128 = 253_402_300_799_999_999_999;

/// The instant an RFC 3339 time names, in nanoseconds from the Unix epoch, over the whole of
/// the years 0000 to 9999: past the range a [`Timestamp`] holds, which stops a day short.
fn instant_nanos(s: &str) -> Option<i128> {
    let (civil, offset) = civil_and_offset(s)?;
    let dt: k8s_openapi::jiff::civil::DateTime = civil.parse().ok()?;
    let days = dt
        .date()
        .since(k8s_openapi::jiff::civil::date(1970, 1, 1))
        .ok()?
        .get_days();
    let secs = i128::from(days) * 86_400
        + i128::from(dt.hour()) * 3_600
        + i128::from(dt.minute()) * 60
        + i128::from(dt.second())
        - i128::from(offset);
    Some(secs * 1_000_000_000 + i128::from(dt.subsec_nanosecond()))
}

/// The `[start, end)` window of a temporary role first granted at `granted_at`.
pub fn window(
    t: &TemporaryAccess,
    granted_at: Timestamp,
) -> Result<(Timestamp, Timestamp), WindowError> {
    let start = match &t.start {
        Some(s) => parse_time(s).ok_or_else(|| WindowError {
            field: "start",
            message: format!("{s:?} is not an RFC 3339 time such as 2026-01-01T09:00:00Z"),
        })?,
        None => granted_at,
    };
    // By the instants written, not the timestamps: late on the last day of 9999, past the last
    // timestamp the clock holds, times are all taken as that one.
    let start_ns = match &t.start {
        Some(s) => instant_nanos(s),
        None => Some(granted_at.as_nanosecond()),
    };
    let (end, end_ns) = match (&t.end, &t.duration) {
        (Some(e), None) => {
            let end = parse_time(e).ok_or_else(|| WindowError {
                field: "end",
                message: format!("{e:?} is not an RFC 3339 time such as 2026-01-31T18:00:00Z"),
            })?;
            (end, instant_nanos(e))
        }
        (None, Some(d)) => {
            let d = parse_duration(d).filter(|d| d.is_positive()).ok_or_else(|| WindowError {
                field: "duration",
                message: format!(
                    "{d:?} is not a positive duration such as 90m, 8h or 1h30m (units: h, m, s, ms)"
                ),
            })?;
            let end_ns = start_ns.map(|s| s + d.as_nanos());
            let end = match start.checked_add(d) {
                Ok(end) => end,
                // Past the last instant a timestamp holds (late on 30 December 9999), but
                // maybe not past the year, as admission reads it: taken as that instant.
                Err(_) if end_ns.is_some_and(|e| e <= LAST_INSTANT_NANOS) => Timestamp::MAX,
                Err(_) => {
                    return Err(WindowError {
                        field: "duration",
                        message: "start plus duration is past the year 9999".to_owned(),
                    });
                }
            };
            (end, end_ns)
        }
        _ => {
            return Err(WindowError {
                field: "end",
                message: "temporary needs exactly one of end or duration".to_owned(),
            });
        }
    };
    let not_after = match (start_ns, end_ns) {
        (Some(s), Some(e)) => e <= s,
        _ => end <= start,
    };
    if t.start.is_none() && not_after {
        // Granted after it was due to end: not a contradiction in the spec, just expired.
        return Ok((end, end));
    }
    if not_after {
        return Err(WindowError {
            field: "end",
            message: format!("temporary.end ({end}) must be after temporary.start ({start})"),
        });
    }
    Ok((start, end))
}

/// Where `role`, first granted at `granted_at`, stands at `now`.
pub fn state(
    role: &RoleBinding,
    granted_at: Timestamp,
    now: Timestamp,
) -> Result<RoleState, WindowError> {
    let Some(t) = &role.temporary else {
        return Ok(RoleState::Active { until: None });
    };
    let (start, end) = window(t, granted_at)?;
    Ok(if now < start {
        RoleState::Pending {
            starts: start,
            ends: end,
        }
    } else if now < end {
        RoleState::Active { until: Some(end) }
    } else {
        RoleState::Expired { at: end }
    })
}

/// When the roles of the object with `meta` were granted, which a `duration` without `start`
/// counts from: its creation; offline (no creation time), `now`.
pub fn granted_at(meta: &ObjectMeta, now: Timestamp) -> Timestamp {
    meta.creation_timestamp.as_ref().map_or(now, |t| t.0)
}

/// Whether any of `roles`, of the object with `meta`, is in effect at `now`: a membership
/// with none lets nothing in (expired, or still to start).
pub fn any_in_effect(roles: &[RoleBinding], meta: &ObjectMeta, now: Timestamp) -> bool {
    !active_roles(roles, granted_at(meta, now), now).is_empty()
}

/// Whether any of `roles`, on an object with metadata `meta`, is still to start at `now`.
pub fn any_pending(roles: &[RoleBinding], meta: &ObjectMeta, now: Timestamp) -> bool {
    let granted_at = granted_at(meta, now);
    roles
        .iter()
        .any(|r| matches!(state(r, granted_at, now), Ok(RoleState::Pending { .. })))
}

/// The names of the roles among `roles`, first granted at `granted_at`, in effect at `now`
/// (neither pending nor expired).
pub fn active_roles(roles: &[RoleBinding], granted_at: Timestamp, now: Timestamp) -> Vec<String> {
    roles
        .iter()
        .filter(|r| matches!(state(r, granted_at, now), Ok(RoleState::Active { .. })))
        .map(|r| r.role.clone())
        .collect()
}

/// The rule for the roles of an OrgMembership or a ProjectMembership: a temporary window must
/// make sense (an error), and a role that has already expired grants nothing (a warning).
/// A `duration` without `start` counts from the object's creation; offline, from now.
pub(super) fn check_roles(
    roles: &[RoleBinding],
    meta: &ObjectMeta,
    key: &ObjectKey,
    now: Timestamp,
    errors: &mut Vec<Problem>,
    warnings: &mut Vec<Problem>,
) {
    let granted_at = granted_at(meta, now);
    for (j, role) in roles.iter().enumerate() {
        match state(role, granted_at, now) {
            Ok(RoleState::Expired { at }) => {
                let counted = role
                    .temporary
                    .as_ref()
                    .filter(|t| t.counts_from_creation())
                    .map(|_| {
                        format!(
                            ": its duration counts from the object's creation ({granted_at}); set temporary.start to count from another time"
                        )
                    })
                    .unwrap_or_default();
                warnings.push(Problem::warning(
                    Reason::RoleExpired,
                    key,
                    format!("spec.roles[{j}].temporary"),
                    format!(
                        "role {:?} expired at {at} and grants nothing{counted}",
                        role.role
                    ),
                ))
            }
            Ok(_) => {}
            Err(e) => errors.push(Problem::error(
                Reason::InvalidTemporaryAccess,
                key,
                format!("spec.roles[{j}].temporary.{}", e.field),
                e.message,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_over_its_whole_range() {
        for s in [
            "9999-12-31T23:59:59Z",
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59+01:00",
            "9999-12-31t10:00:00-05:00",
            "0000-01-01T00:00:00Z",
            "2026-06-01T12:00:00Z",
        ] {
            assert!(parse_time(s).is_some(), "{s}");
        }
        assert_eq!(parse_time("9999-12-31T23:59:59Z"), Some(Timestamp::MAX));
        for s in [
            "9999-12-32T00:00:00Z",
            "9999-12-31T24:00:00Z",
            "9999-12-31 23:59:59Z",
            "9999-12-31T23:59:59",
            "9999-12-31T23:59:59+25:00",
            "10000-01-01T00:00:00Z",
            "2026-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5+00:00",
            "9999-12-31T23:59:60Z",
            "soon",
        ] {
            assert!(parse_time(s).is_none(), "{s}");
        }
    }

    #[test]
    fn a_window_may_end_on_the_last_day_of_9999() {
        let t = |start: &str, duration: &str| TemporaryAccess {
            start: Some(start.into()),
            end: None,
            duration: Some(duration.into()),
        };
        let granted = ts("2026-01-01T00:00:00Z");
        for (start, duration) in [
            ("9999-12-31T22:00:00Z", "1h"),
            ("9999-12-31T23:59:59Z", "999ms"),
            ("9999-12-31T23:00:00-00:30", "29m"),
            ("9707-09-21T00:00:00Z", "2562047h"),
        ] {
            let (_, end) = window(&t(start, duration), granted).expect(start);
            assert_eq!(end, Timestamp::MAX, "{start} + {duration}");
        }
        for (start, duration) in [
            ("9999-12-31T23:59:59Z", "1s"),
            ("9999-12-31T23:00:00-01:00", "1ms"),
            ("9800-01-01T00:00:00Z", "2562047h"),
        ] {
            let e = window(&t(start, duration), granted).unwrap_err();
            assert_eq!(e.field, "duration", "{start} + {duration}");
        }
        assert_eq!(
            instant_nanos("1970-01-01T01:00:00+01:00"),
            Some(0),
            "offsets count"
        );
        assert_eq!(
            instant_nanos("9999-12-31T23:59:59.999999999Z"),
            Some(LAST_INSTANT_NANOS)
        );
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn temp(start: Option<&str>, end: Option<&str>, duration: Option<&str>) -> RoleBinding {
        RoleBinding {
            role: "admin".into(),
            temporary: Some(TemporaryAccess {
                start: start.map(Into::into),
                end: end.map(Into::into),
                duration: duration.map(Into::into),
            }),
        }
    }

    #[test]
    fn go_durations() {
        let s = |secs: i64| Some(SignedDuration::from_secs(secs));
        assert_eq!(parse_duration("90m"), s(5400));
        assert_eq!(parse_duration("1h30m"), s(5400));
        assert_eq!(parse_duration("1.5h"), s(5400));
        assert_eq!(parse_duration("168h"), s(604800));
        assert_eq!(
            parse_duration("300ms"),
            Some(SignedDuration::from_millis(300))
        );
        assert_eq!(parse_duration("2µs"), Some(SignedDuration::from_micros(2)));
        for bad in [
            "", "h", "1", "1d", "1w", ".5h", "5.h", "1.2.3h", "-1h", "1h 30m", "1H",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration("99999999999999h"), None);
    }

    #[test]
    fn permanent_roles_are_always_active() {
        let r = RoleBinding {
            role: "member".into(),
            temporary: None,
        };
        let now = ts("2030-01-01T00:00:00Z");
        assert_eq!(state(&r, now, now), Ok(RoleState::Active { until: None }));
    }

    #[test]
    fn end_window_moves_through_states() {
        let r = temp(
            Some("2026-01-01T09:00:00Z"),
            Some("2026-01-01T17:00:00Z"),
            None,
        );
        let g = ts("2025-12-01T00:00:00Z");
        let before = state(&r, g, ts("2026-01-01T08:59:59Z")).unwrap();
        assert_eq!(
            before,
            RoleState::Pending {
                starts: ts("2026-01-01T09:00:00Z"),
                ends: ts("2026-01-01T17:00:00Z")
            }
        );
        assert_eq!(before.next_change(), Some(ts("2026-01-01T09:00:00Z")));
        let during = state(&r, g, ts("2026-01-01T12:00:00Z")).unwrap();
        assert!(during.is_active());
        assert_eq!(during.next_change(), Some(ts("2026-01-01T17:00:00Z")));
        // The end is exclusive: at 17:00 sharp the role is gone.
        let after = state(&r, g, ts("2026-01-01T17:00:00Z")).unwrap();
        assert_eq!(
            after,
            RoleState::Expired {
                at: ts("2026-01-01T17:00:00Z")
            }
        );
        assert!(!after.is_active());
    }

    #[test]
    fn duration_counts_from_start_or_grant() {
        let granted = ts("2026-03-01T10:00:00Z");
        let r = temp(None, None, Some("8h"));
        assert_eq!(
            state(&r, granted, ts("2026-03-01T17:59:59Z")).unwrap(),
            RoleState::Active {
                until: Some(ts("2026-03-01T18:00:00Z"))
            }
        );
        let r = temp(Some("2026-03-02T00:00:00Z"), None, Some("1h"));
        assert_eq!(
            window(r.temporary.as_ref().unwrap(), granted).unwrap(),
            (ts("2026-03-02T00:00:00Z"), ts("2026-03-02T01:00:00Z"))
        );
    }

    #[test]
    fn an_end_before_the_grant_is_expired_not_invalid() {
        let r = temp(None, Some("2026-01-01T00:00:00Z"), None);
        let g = ts("2026-02-01T00:00:00Z");
        assert_eq!(
            state(&r, g, g),
            Ok(RoleState::Expired {
                at: ts("2026-01-01T00:00:00Z")
            })
        );
    }

    #[test]
    fn impossible_windows_are_errors() {
        let g = ts("2026-01-01T00:00:00Z");
        let cases = [
            (
                temp(
                    Some("2026-01-02T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None,
                ),
                "end",
            ),
            (
                temp(
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None,
                ),
                "end",
            ),
            (temp(None, None, None), "end"),
            (temp(None, Some("2026-01-02T00:00:00Z"), Some("1h")), "end"),
            (
                temp(Some("yesterday"), Some("2026-01-02T00:00:00Z"), None),
                "start",
            ),
            (temp(None, Some("soon"), None), "end"),
            (temp(None, None, Some("0s")), "duration"),
            (temp(None, None, Some("3d")), "duration"),
        ];
        for (r, field) in cases {
            let err = state(&r, g, g).unwrap_err();
            assert_eq!(err.field, field, "{r:?}: {}", err.message);
        }
    }
}
