// Smoke: every method of SPEC section 2 once (and a few of their rules), one VU,
// one iteration; every check must pass (thresholds checks rate==1).
//
//   scripts/load.sh scripts/k6/smoke.js            (isolated stack, < 1 minute)
//   BASE_URL=http://127.0.0.1:8080 API_KEY=... bin/k6 run scripts/k6/smoke.js
//
// Renewals: the smoke sells a yearly order (~365 days left). With
// RENEWAL_WINDOW_DAYS >= 366 (scripts/load.sh: 400) the first renewal is
// accepted and a second one refused (~730 days left); with the service's 15 the
// first is refused. Set RENEWAL_WINDOW_DAYS to the workers' value against a
// stack of your own.
import { check, group } from 'k6';
import {
  call, json, replayed, isError, customerChecks, orderChecks, orderShape,
  renewalAccepted, uid, uniqueEmail, sameJSON, SUMMARY_TREND_STATS, DAY, WINDOW_DAYS,
} from './lib.js';

export const options = {
  scenarios: { smoke: { executor: 'per-vu-iterations', vus: 1, iterations: 1, maxDuration: '45s' } },
  thresholds: { checks: ['rate==1'], http_req_failed: ['rate==0'] },
  summaryTrendStats: SUMMARY_TREND_STATS,
};

const E4 = (status) => ({ expect: [status] });

export default function () {
  const cid = uid('c');
  const oid = uid('o');
  const r1 = uid('r');
  const r2 = uid('r');
  const email = uniqueEmail('u');
  let customer = null;
  let order = null;
  let renewed = false;
  let nRenewals = 0;

  group('createCustomer', () => {
    // The partners' primer: GET with a JSON body.
    const params = { id: cid, name: 'ABC Company', admin: { email: 'test3@example.com', phone: '111111111', displayName: 'Isa Aswath' } };
    const res = call('createCustomer', params, {}, { verb: 'GET' });
    check(res, Object.assign(customerChecks(cid, 'ABC Company', 'test3@example.com'), {
      'createCustomer: not a replay': (r) => !replayed(r),
      'createCustomer: X-Request-Id returned': (r) => !!r.headers['X-Request-Id'],
    }));
    customer = json(res);
    const again = call('createCustomer', params, { 'X-Request-Id': 'smoke-' + cid });
    check(again, {
      'createCustomer again: 200 replay': (r) => r.status === 200 && replayed(r),
      'createCustomer again: same body byte for byte': (r) => r.body === res.body,
      'createCustomer again: X-Request-Id echoed': (r) => r.headers['X-Request-Id'] === 'smoke-' + cid,
    });
    const other = call('createCustomer', Object.assign({}, params, { name: 'Other' }), {}, E4(409));
    isError(other, 409, 'already_exists', 'params.id');
  });

  group('createFirstOrder', () => {
    const res = call('createFirstOrder', { customer: cid, id: oid, product: 'oo-lite', licenses: 20, duration: 'yearly' });
    check(res, Object.assign(orderChecks(oid, 'active'), {
      'createFirstOrder: customer, product, licenses, duration': (r) => {
        const b = json(r) || {};
        return b.customer === cid && b.product === 'oo-lite' && b.licenses === 20 && b.duration === 'yearly';
      },
      'createFirstOrder: one year term starting now': (r) => {
        const b = json(r) || {};
        const len = b.termEnd - b.termStart;
        return Math.abs(b.termStart - Date.now() / 1000) < 120 && (len === 365 * DAY || len === 366 * DAY);
      },
      'createFirstOrder: no renewals': (r) => ((json(r) || {}).renewals || [1]).length === 0,
    }));
    order = json(res);
  });
  if (!order || !orderShape(order)) return;

  group('createRenewalOrder', () => {
    const accept = renewalAccepted(order.termEnd);
    const res = call('createRenewalOrder', { parent: oid, id: r1 }, {}, accept ? {} : E4(422));
    if (accept) {
      check(res, Object.assign(orderChecks(oid, 'active'), {
        'createRenewalOrder: one renewal listed': (r) => ((json(r) || {}).renewals || []).length === 1,
        'createRenewalOrder: renewal starts at the old termEnd': (r) => {
          const rn = ((json(r) || {}).renewals || [])[0] || {};
          return rn.id === r1 && rn.termStart === order.termEnd && rn.termEnd === (json(r) || {}).termEnd;
        },
        'createRenewalOrder: termEnd one year later': (r) => {
          const d = (json(r) || {}).termEnd - order.termEnd;
          return d === 365 * DAY || d === 366 * DAY;
        },
        'createRenewalOrder: termStart is still the term in force': (r) => (json(r) || {}).termStart === order.termStart,
      }));
      renewed = res.status === 200;
      if (renewed) { order = json(res); nRenewals = 1; }
    } else {
      isError(res, 422, 'renewal_too_early', 'params.parent');
    }
    // A second renewal: refused unless the window exceeds the ~730 days then left.
    const accept2 = renewalAccepted(order.termEnd);
    const second = call('createRenewalOrder', { parent: oid, id: r2 }, {}, accept2 ? {} : E4(422));
    if (accept2) {
      check(second, { 'second renewal: 200 (window above the days left)': (r) => r.status === 200 });
      if (second.status === 200) { order = json(second); nRenewals++; }
    }
    else isError(second, 422, 'renewal_too_early', 'params.parent');
    if (renewed) {
      const nf = call('createRenewalOrder', { parent: r1, id: uid('r') }, {}, E4(422));
      isError(nf, 422, 'not_a_first_order', 'params.parent');
    }
  });

  group('suspendOrder / resumeOrder', () => {
    check(call('suspendOrder', { id: oid }), orderChecks(oid, 'suspended'));
    check(call('suspendOrder', { id: oid }), { 'suspendOrder again: 200 suspended': (r) => r.status === 200 && (json(r) || {}).status === 'suspended' });
    check(call('resumeOrder', { id: oid }), orderChecks(oid, 'active'));
  });

  group('updateOrder', () => {
    const res = call('updateOrder', { id: oid, licenses: 42, product: 'oo-ent' });
    check(res, Object.assign(orderChecks(oid, 'active'), {
      'updateOrder: licenses and product changed': (r) => {
        const b = json(r) || {};
        return b.licenses === 42 && b.product === 'oo-ent' && b.duration === 'yearly';
      },
    }));
  });

  group('getCustomer / getOrder', () => {
    const gc = call('getCustomer', { id: cid });
    check(gc, Object.assign(customerChecks(cid, 'ABC Company', 'test3@example.com'), {
      'getCustomer: same as createCustomer': (r) => sameJSON(json(r), customer),
    }));
    const go = call('getOrder', { id: oid });
    check(go, Object.assign(orderChecks(oid, 'active'), {
      'getOrder: licenses 42, renewals as sold': (r) => {
        const b = json(r) || {};
        return b.licenses === 42 && (b.renewals || []).length === nRenewals && b.termEnd === order.termEnd;
      },
    }));
    if (renewed) check(call('getOrder', { id: r1 }), orderChecks(oid, 'active')); // renewal id -> its first order
    isError(call('getCustomer', { id: uid('none') }, {}, E4(404)), 404, 'customer_not_found', 'params.id');
    isError(call('getOrder', { id: uid('none') }, {}, E4(404)), 404, 'order_not_found', 'params.id');
  });

  group('cancelOrder', () => {
    check(call('cancelOrder', { id: oid }), orderChecks(oid, 'cancelled'));
    check(call('cancelOrder', { id: oid }), { 'cancelOrder again: 200 cancelled': (r) => r.status === 200 && (json(r) || {}).status === 'cancelled' });
    isError(call('resumeOrder', { id: oid }, {}, E4(409)), 409, 'order_cancelled');
    isError(call('createRenewalOrder', { parent: oid, id: uid('r') }, {}, E4(409)), 409, 'order_cancelled');
  });

  group('createUser / resetUser / deleteUser', () => {
    const cu = call('createUser', { email: email, displayName: 'Smoke User' });
    check(cu, {
      'createUser: 200': (r) => r.status === 200,
      'createUser: email, displayName, createdAt, isActive': (r) => {
        const b = json(r) || {};
        return b.email === email && b.displayName === 'Smoke User' && Number.isInteger(b.createdAt) && b.isActive === true;
      },
    });
    isError(call('createUser', { email: '' }, {}, E4(400)), 400, 'invalid_params', 'params.email');
    const ru = call('resetUser', { email: email });
    check(ru, {
      'resetUser: 200': (r) => r.status === 200,
      'resetUser: resetToken present': (r) => {
        const b = json(r) || {};
        return b.email === email && typeof b.resetToken === 'string' && b.resetToken.length >= 16;
      },
      'resetUser: expiresAt in the future': (r) => (json(r) || {}).expiresAt > Date.now() / 1000,
    });
    const ru2 = call('resetUser', { email: email });
    check(ru2, { 'resetUser again: a new token': (r) => r.status === 200 && (json(r) || {}).resetToken !== (json(ru) || {}).resetToken });
    const du = call('deleteUser', { email: email });
    check(du, { 'deleteUser: 200 deleted': (r) => r.status === 200 && (json(r) || {}).email === email && (json(r) || {}).deleted === true });
    check(call('deleteUser', { email: email }), { 'deleteUser absent: 200 deleted': (r) => r.status === 200 && (json(r) || {}).deleted === true });
    isError(call('resetUser', { email: email }, {}, E4(404)), 404, 'user_not_found', 'params.email');
  });

  group('auth', () => {
    const res = call('getCustomer', { id: cid }, { 'x-api-key': '' }, E4(401));
    isError(res, 401, 'unauthorized');
  });

  if (WINDOW_DAYS >= 366) check(renewed, { 'renewal accepted with RENEWAL_WINDOW_DAYS >= 366': (v) => v === true });
}
