import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { agentKeysEnv } from '../../src/config/agent-schema.js';
import { ConfigError, validateConfig } from '../../src/config/load.js';
import { resolveFeatures } from '../../src/config/schema.js';
import { compileFilter, jqExpressions, matchesRequest } from '../../agent/src/incoming/http-filter.js';
import { JQ_TIME_LIMIT_MS, JqEngine, evaluateJq, jqHeaderLines, jqTimeLimitMs } from '../../agent/src/incoming/jq.js';

/** mirrord's jq header filters: the config shapes, what reaches the agent, refusals, and the agent's engine. */

const httpFilter = (f: Record<string, unknown>) =>
  resolveFeatures(validateConfig({ target: 'docker/x', feature: { network: { incoming: { mode: 'steal', http_filter: f } } } })).incoming.http_filter;

function refusal(f: Record<string, unknown>): string {
  try {
    httpFilter(f);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, 78);
    assert.equal(err.problems.length, 1, err.message);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    return `${err.problems[0]!.path}: ${err.problems[0]!.message}`;
  }
  assert.fail('accepted');
}

describe('jq header filters in the config', () => {
  it('header_filter_jq and {"query"} items of all_of / any_of (nested too) are accepted as written', () => {
    assert.deepEqual(httpFilter({ header_filter_jq: '. == "x-user: alice"' }), { header_filter_jq: '. == "x-user: alice"' });
    assert.deepEqual(httpFilter({ all_of: [{ query: 'startswith("x-user: ")' }, { path: '^/api' }] })?.all_of, [
      { query: 'startswith("x-user: ")' },
      { path: '^/api' },
    ]);
    assert.deepEqual(httpFilter({ any_of: [{ header: '^a: b$' }, { all_of: [{ query: 'test("x"; "i")' }, { method: 'GET' }] }] })?.any_of, [
      { header: '^a: b$' },
      { all_of: [{ query: 'test("x"; "i")' }, { method: 'GET' }] },
    ]);
    // A trailing comment and definitions of its own are jq too.
    assert.ok(httpFilter({ header_filter_jq: 'def user: ltrimstr("x-user: "); user == "bob" # the user' }));
  });

  it('a bad expression is refused when the config is read, with jq own words, exit 78', () => {
    assert.match(refusal({ header_filter_jq: '.[' }), /^feature\.network\.incoming\.http_filter\.header_filter_jq: not a valid jq expression: syntax error/);
    assert.equal(
      refusal({ any_of: [{ header: 'a' }, { query: 'nosuchfn(1)' }] }),
      'feature.network.incoming.http_filter.any_of.1.query: not a valid jq expression: nosuchfn/1 is not defined',
    );
    assert.match(refusal({ all_of: [{ query: '$undefined_var' }] }), /all_of\.0\.query: not a valid jq expression: \$undefined_var is not defined/);
    assert.equal(refusal({ header_filter_jq: '' }), 'feature.network.incoming.http_filter.header_filter_jq: a jq expression cannot be empty');
  });

  it('checking compiles only: an expression that would never end is accepted at once', () => {
    const t0 = performance.now();
    assert.ok(httpFilter({ header_filter_jq: 'until(false; .)' }));
    assert.ok(performance.now() - t0 < 10_000);
  });

  it('agent.jaq_time_limit reaches the agent as milliseconds; unset (or 0) is the 500 ms default', () => {
    const agent = validateConfig({ target: 'docker/x', agent: { jaq_time_limit: 250 } }).agent;
    assert.equal(agentKeysEnv(agent).MIRRORD_AGENT_JAQ_TIME_LIMIT, '250');
    assert.equal(jqTimeLimitMs({ MIRRORD_AGENT_JAQ_TIME_LIMIT: '250' }), 250);
    assert.equal(agentKeysEnv(validateConfig({ target: 'docker/x', agent: { jaq_time_limit: 0 } }).agent).MIRRORD_AGENT_JAQ_TIME_LIMIT, undefined);
    assert.equal(jqTimeLimitMs({}), JQ_TIME_LIMIT_MS);
    assert.equal(JQ_TIME_LIMIT_MS, 500);
  });
});

describe("the agent's jq engine", () => {
  const engine = new JqEngine(400);
  after(() => engine.close());
  const headers = jqHeaderLines(['Host', 'web', 'X-User', 'alice', ':path', '/']);

  it('sees each header as "name: value" with the name in lower case, pseudo-headers left out', () => {
    assert.deepEqual(headers, ['host: web', 'x-user: alice']);
  });

  it('matches when the first boolean an expression outputs for some header is true', async () => {
    assert.equal(await engine.match('. == "x-user: alice"', headers), true);
    assert.equal(await engine.match('. == "X-User: alice"', headers), false);
    assert.equal(await engine.match('startswith("x-user: ") and endswith("bob")', headers), false);
    // Non-boolean outputs are skipped; the first boolean decides.
    assert.equal(await engine.match('1, "x", (. == "host: web")', headers), true);
    assert.equal(await engine.match('(. == "host: nope"), true', headers), false);
    // A run-time error is no match for that header, not a failure.
    assert.equal(await engine.match('if startswith("host") then error("boom") else . == "x-user: alice" end', headers), true);
    assert.equal(await engine.match('error("boom")', headers), false);
    assert.equal(await engine.match('empty', headers), false);
  });

  it('cuts a runaway expression at the limit without blocking the event loop, then keeps working', async () => {
    let ticks = 0;
    const tick = setInterval(() => ticks++, 20);
    const t0 = performance.now();
    assert.equal(await engine.match('until(false; .)', headers), false);
    const took = performance.now() - t0;
    clearInterval(tick);
    assert.ok(took >= 390 && took < 3000, `cut after ${took.toFixed(0)} ms`);
    assert.ok(ticks >= 5, `the event loop ran ${ticks} ticks while jq spun`);
    assert.equal(engine.cut, 1);
    assert.equal(await engine.match('. == "host: web"', headers), true);
  });

  it('routes all_of / any_of trees holding jq leaves with their results', async () => {
    const f = compileFilter({ anyOf: [{ headerJq: '. == "x-user: bob"' }, { allOf: [{ headerJq: 'startswith("x-user: a")' }, { path: '^/api' }] }] });
    const exprs = jqExpressions([f]);
    assert.deepEqual(exprs, ['. == "x-user: bob"', 'startswith("x-user: a")']);
    const rawHeaders = ['X-User', 'alice'];
    const jq = await evaluateJq(exprs, rawHeaders, engine);
    assert.equal(matchesRequest(f, { method: 'GET', path: '/api/x', rawHeaders, jq }), true);
    assert.equal(matchesRequest(f, { method: 'GET', path: '/other', rawHeaders, jq }), false);
    // Without the results (never evaluated), a jq leaf does not match.
    assert.equal(matchesRequest(f, { method: 'GET', path: '/api/x', rawHeaders }), false);
  });
});
