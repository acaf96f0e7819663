//! HTTP `Range` header parsing for file downloads (RFC 9110 §14): a single byte range.
//! Multiple ranges are answered with the whole file, as RFC 9110 allows.

/// What to send for a request on a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The whole file (no Range header, or one we ignore).
    Whole,
    /// Bytes `start..=end`, as 206 Partial Content.
    Partial { start: u64, end: u64 },
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Decides what to send for header value `range` (if any) on a file of `len` bytes.
pub fn plan(range: Option<&str>, len: u64) -> Plan {
    let Some(spec) = range.and_then(|r| r.trim().strip_prefix("bytes=")) else {
        return Plan::Whole;
    };
    if spec.contains(',') {
        return Plan::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Plan::Whole;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        // "-N": the last N bytes.
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || len == 0 {
                Plan::Unsatisfiable
            } else {
                Plan::Partial {
                    start: len.saturating_sub(n),
                    end: len - 1,
                }
            }
        }
        (Ok(start), _) if start >= len => Plan::Unsatisfiable,
        // "N-": from N to the end.
        (Ok(start), Err(_)) if b.is_empty() => Plan::Partial {
            start,
            end: len - 1,
        },
        (Ok(start), Ok(end)) if end >= start => Plan::Partial {
            start,
            end: end.min(len - 1),
        },
        _ => Plan::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(plan(None, 10), Plan::Whole);
        assert_eq!(
            plan(Some("bytes=0-3"), 10),
            Plan::Partial { start: 0, end: 3 }
        );
        assert_eq!(
            plan(Some("bytes=5-"), 10),
            Plan::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            plan(Some("bytes=-4"), 10),
            Plan::Partial { start: 6, end: 9 }
        );
        assert_eq!(
            plan(Some("bytes=-40"), 10),
            Plan::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            plan(Some("bytes=8-100"), 10),
            Plan::Partial { start: 8, end: 9 }
        );
        assert_eq!(plan(Some("bytes=10-"), 10), Plan::Unsatisfiable);
        assert_eq!(plan(Some("bytes=-0"), 10), Plan::Unsatisfiable);
        assert_eq!(plan(Some("bytes=5-2"), 10), Plan::Whole);
        assert_eq!(plan(Some("bytes=0-1,4-5"), 10), Plan::Whole);
        assert_eq!(plan(Some("items=0-1"), 10), Plan::Whole);
        assert_eq!(plan(Some("bytes=0-0"), 0), Plan::Unsatisfiable);
    }
}
