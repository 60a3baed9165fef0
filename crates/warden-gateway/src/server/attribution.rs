//! Request phases around identity that are not authentication itself: the live decisions on
//! a principal, and the attribution of requests refused before their route was known.

use warden_event::SubjectKind;

use super::Shared;
use super::request::{Draft, rate_limited};
use crate::identity::Principal;
use crate::live::LiveState;
use crate::ratelimit::LimitKey;
use crate::tls::TlsConn;
use crate::{Reject, Verdict};

/// The live decision on a principal's identity, API key and tenant (the client IP was checked
/// first): a quarantine of any wins over a throttle.
pub(super) fn principal_quarantine(gw: &Shared, principal: Option<&Principal>) -> Verdict {
    let Some(p) = principal else {
        return Verdict::Pass;
    };
    // At most three subjects (identity, API key, tenant), on the stack.
    let mut subjects = [(SubjectKind::Identity, p.identity.as_str()); 3];
    let mut n = 1;
    if let Some(k) = &p.key_id {
        subjects[n] = (SubjectKind::ApiKey, k);
        n += 1;
    }
    if !p.tenant.is_empty() {
        subjects[n] = (SubjectKind::Tenant, &p.tenant);
        n += 1;
    }
    gw.quarantine.check(warden_event::now_ns(), &subjects[..n])
}

/// A request refused before its route was known (refused path, no route, method not allowed):
/// attribute it to the identity its credentials name, if they are valid, so a probing device's
/// probes count against it; refuse a quarantined identity with its 403; count the request
/// against the identity's (or, anonymous, the address's) rate limits. The client sees
/// `reject` (or the 403/429) whatever its credentials were.
pub(super) async fn refuse_attributed(
    gw: &Shared,
    live: &LiveState,
    headers: &axum::http::HeaderMap,
    tls: Option<&TlsConn>,
    draft: &mut Draft,
    reject: Reject,
    ip_throttle: Option<(warden_event::Subject, Option<warden_event::ThrottleLimit>)>,
) -> Reject {
    let (principal, auth) = gw.identity.attribute(live, headers, tls, draft.ts).await;
    draft.auth = auth;
    let Some(p) = principal else {
        return match live.limits.check_unauthenticated(draft.client_ip) {
            Ok(()) => reject,
            Err(l) => rate_limited(l),
        };
    };
    draft.identity = p.identity.clone().into();
    draft.tenant = p.tenant.clone();
    draft.device_type = p.device_type.clone();
    let throttled = match principal_quarantine(gw, Some(&p)) {
        Verdict::Quarantined { .. } => return Reject::Quarantined,
        Verdict::Throttled { subject, limit } => Some((subject, limit)),
        Verdict::Pass => ip_throttle,
    };
    let key = LimitKey {
        identity: Some(&p.identity),
        tenant: &p.tenant,
        device_type: &p.device_type,
        route: "",
        ip: draft.client_ip,
        throttled: throttled.as_ref().map(|(s, l)| (s, *l)),
    };
    match live.limits.check(&key) {
        Ok(_) => reject,
        Err(l) => rate_limited(l),
    }
}
