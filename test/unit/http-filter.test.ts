import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileFilter, matchesRequest, needsBody } from '../../agent/src/incoming/http-filter.js';
import { compileJsonPath } from '../../agent/src/incoming/jsonpath.js';

/** all_of / any_of (nested) and body_filter, evaluated as the agent does per request. */
const req = (method: string, path: string, headers: Record<string, string> = {}, body?: unknown) => ({
  method,
  path,
  rawHeaders: Object.entries(headers).flat(),
  body: body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
});

describe('HTTP filter trees', () => {
  it('allOf needs every item, anyOf one; nesting composes; top-level keys all apply', () => {
    const f = compileFilter({ allOf: [{ header: '^x-user: me$' }, { anyOf: [{ path: '^/api/' }, { method: '^post$' }] }] });
    assert.equal(matchesRequest(f, req('GET', '/api/x', { 'x-user': 'me' })), true);
    assert.equal(matchesRequest(f, req('POST', '/other', { 'x-user': 'me' })), true);
    assert.equal(matchesRequest(f, req('GET', '/other', { 'x-user': 'me' })), false, 'neither branch of the any');
    assert.equal(matchesRequest(f, req('GET', '/api/x', { 'x-user': 'you' })), false, 'the all needs the header');
    const both = compileFilter({ path: '^/a', anyOf: [{ header: 'x-a: 1' }, { header: 'x-b: 1' }] });
    assert.equal(matchesRequest(both, req('GET', '/a', { 'x-b': '1' })), true);
    assert.equal(matchesRequest(both, req('GET', '/b', { 'x-b': '1' })), false, 'path_filter beside any_of must match too');
    assert.equal(needsBody(f), false, 'no body filter: routing never waits for a body');
  });

  it("body filter: mirrord's examples, typeof, non-JSON and missing bodies never match", () => {
    const f = compileFilter({ body: { query: '$.data[*].legacyEntityIds.legacyUserIdentityId', matches: '^identity123$' } });
    assert.equal(needsBody(f), true);
    const doc = { data: [{ legacyEntityIds: { legacyUserIdentityId: 'other' } }, { legacyEntityIds: { legacyUserIdentityId: 'identity123' } }] };
    assert.equal(matchesRequest(f, req('POST', '/', {}, doc)), true, 'one selected value matching is enough');
    assert.equal(matchesRequest(f, req('POST', '/', {}, { data: [] })), false);
    assert.equal(matchesRequest(f, req('POST', '/', {}, 'not json')), false);
    assert.equal(matchesRequest(f, req('POST', '/')), false, 'no body read (too long or too slow): no match');
    const typed = compileFilter({ body: { query: "$.books[?(typeof(@) == 'number')]", matches: '4$' } });
    assert.equal(matchesRequest(typed, req('POST', '/', {}, { books: [1111, 2222, 4444] })), true);
    assert.equal(matchesRequest(typed, req('POST', '/', {}, { books: ['1111', '2222', '4444'] })), false, 'strings are not numbers');
    const inAll = compileFilter({ allOf: [{ path: '/buildings' }, { body: { query: '$.library.books[*]', matches: '^\\d{3,5}$' } }] });
    assert.equal(matchesRequest(inAll, req('POST', '/buildings', {}, { library: { books: [34555, 1233] } })), true);
    assert.equal(needsBody(inAll), true);
  });

  it('a bad regex or JSONPath is refused with a line naming it', () => {
    assert.throws(() => compileFilter({ header: '(' }), /http filter header "\(" is not a valid regex/);
    assert.throws(() => compileFilter({ body: { query: 'data[0]', matches: '.' } }), /JSONPath "data\[0\]": a query starts with \$/);
    assert.throws(() => compileFilter({ anyOf: [] }), /anyOf cannot be empty/);
  });
});

describe('JSONPath', () => {
  const doc = {
    store: {
      book: [
        { t: 'a', price: 8 },
        { t: 'b', price: 12, isbn: 'x' },
        { t: 'c', price: 9 },
      ],
      bicycle: { price: 20 },
    },
  };
  const q = (s: string) => compileJsonPath(s).select(doc);
  it('names, wildcards, descendants, indexes, slices, unions and filters', () => {
    assert.deepEqual(q('$.store.book[*].t'), ['a', 'b', 'c']);
    assert.deepEqual(q('$..price'), [8, 12, 9, 20]);
    assert.deepEqual(q("$['store']['bicycle'].price"), [20]);
    assert.deepEqual(q('$.store.book[-1].t'), ['c']);
    assert.deepEqual(q('$.store.book[0:2].t'), ['a', 'b']);
    assert.deepEqual(q('$.store.book[::-1].t'), ['c', 'b', 'a']);
    assert.deepEqual(q('$.store.book[0,2].t'), ['a', 'c']);
    assert.deepEqual(q('$.store.book[?@.isbn].t'), ['b']);
    assert.deepEqual(q('$.store.book[?(@.price < 10 && @.t != "a")].t'), ['c']);
    assert.deepEqual(q('$.store.book[?!(@.price >= 9)].t'), ['a']);
    assert.deepEqual(q("$.store.book[?match(@.t, '[ab]')].t"), ['a', 'b']);
    assert.deepEqual(q('$.store.book[?length(@.t) == 1].price'), [8, 12, 9]);
    assert.deepEqual(q('$.nothing.here'), []);
  });
});
