//! Which upstream takes a request: the least busy healthy one that serves the model.

/// What the chooser knows about one upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Candidate {
    /// Passed its last health check (and no request to it has failed since).
    pub healthy: bool,
    /// Lists the requested model in its `/v1/models` (true for every upstream when the
    /// request names no model).
    pub serves: bool,
    /// Requests forwarded to it that have not finished.
    pub outstanding: usize,
    /// Already tried for this request.
    pub tried: bool,
}

/// The upstream for a request, or `None` when no healthy untried one is left.
///
/// Among the healthy, untried upstreams that serve the model (all healthy, untried ones when
/// none of the healthy upstreams advertises it) the one with the fewest outstanding
/// requests wins; ties go to the first at or after `cursor` in circular order, so a caller
/// that moves the cursor past each choice spreads equal load round-robin.
///
/// An upstream that serves the model but was already tried still counts as advertising it:
/// when it fails, the request does not fall over to upstreams that never had the model.
pub fn choose(cands: &[Candidate], cursor: usize) -> Option<usize> {
    let n = cands.len();
    if n == 0 {
        return None;
    }
    let advertised = cands.iter().any(|c| c.serves && (c.healthy || c.tried));
    let mut best: Option<(usize, usize)> = None;
    for k in 0..n {
        let i = (cursor + k) % n;
        let c = &cands[i];
        if !c.healthy || c.tried || (advertised && !c.serves) {
            continue;
        }
        if best.is_none_or(|(o, _)| c.outstanding < o) {
            best = Some((c.outstanding, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(outstanding: usize) -> Candidate {
        Candidate {
            healthy: true,
            serves: true,
            outstanding,
            tried: false,
        }
    }

    #[test]
    fn least_outstanding_wins() {
        let c = [up(3), up(1), up(2)];
        assert_eq!(choose(&c, 0), Some(1));
        assert_eq!(choose(&c, 2), Some(1));
    }

    #[test]
    fn ties_go_round_robin_from_the_cursor() {
        let c = [up(0), up(0), up(0)];
        let mut cursor = 0;
        let mut order = Vec::new();
        for _ in 0..6 {
            let i = choose(&c, cursor).unwrap();
            order.push(i);
            cursor = i + 1;
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
        // Only the tied minimum takes part in the rotation.
        let c = [up(0), up(5), up(0)];
        assert_eq!(choose(&c, 1), Some(2));
        assert_eq!(choose(&c, 3), Some(0));
    }

    #[test]
    fn unhealthy_and_tried_upstreams_are_skipped() {
        let mut c = [up(4), up(0), up(1)];
        c[1].healthy = false;
        assert_eq!(choose(&c, 0), Some(2));
        c[2].tried = true;
        assert_eq!(choose(&c, 0), Some(0));
        c[0].healthy = false;
        assert_eq!(choose(&c, 0), None);
        assert_eq!(choose(&[], 0), None);
    }

    #[test]
    fn upstreams_serving_the_model_come_first_else_any_healthy_one() {
        let mut c = [up(0), up(7), up(0)];
        c[0].serves = false;
        c[2].serves = false;
        assert_eq!(
            choose(&c, 0),
            Some(1),
            "the only one with the model, though busiest"
        );
        // The one with the model is down: any healthy one may know the model after all.
        c[1].healthy = false;
        assert_eq!(choose(&c, 0), Some(0));
        // It was tried and failed: do not fall over to upstreams without the model.
        c[1].tried = true;
        assert_eq!(choose(&c, 0), None);
    }
}
