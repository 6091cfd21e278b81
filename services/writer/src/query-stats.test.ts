import { describe, expect, it } from 'vitest';
import { queryStats } from './query-stats';

const stats = (json: string) => queryStats(Buffer.from(json).toString('latin1'));

describe('queryStats', () => {
  it('sums calls and total_time over the entries of queries', () => {
    expect(stats('{"type":"pg_query_stats","queries":[{"calls":2,"total_time":4.5},{"calls":3,"total_time":1}]}')).toEqual({
      calls: 5,
      totalTime: 5.5,
    });
  });

  it('takes total_exec_time (PostgreSQL 13+) when an entry has no total_time, and never both', () => {
    expect(stats('{"queries":[{"calls":1,"total_exec_time":8},{"calls":1,"total_time":10,"total_exec_time":8}]}')).toEqual({
      calls: 2,
      totalTime: 18,
    });
  });

  it('counts only the members of the queries entries: not a summary, not a nested object, not text', () => {
    const element = JSON.stringify({
      type: 'pg_query_stats',
      summary: { calls: 1000, total_time: 5000 },
      queries: [{ calls: 2, total_time: 4, query: 'SELECT "calls": 99', plans: { calls: 7, total_time: 70 } }],
      calls: 50,
    });
    expect(stats(element)).toEqual({ calls: 2, totalTime: 4 });
  });

  it('the last queries key counts (as in jsonb); strings, nulls and non-objects are not numbers', () => {
    expect(stats('{"queries":[{"calls":9,"total_time":9}],"queries":[{"calls":1,"total_time":2}]}')).toEqual({
      calls: 1,
      totalTime: 2,
    });
    expect(stats('{"queries":[{"calls":"3","total_time":null},4,"x",{"calls":1,"total_time":-2e1}]}')).toEqual({
      calls: 1,
      totalTime: -20,
    });
    expect(stats('{"queries":[]}')).toEqual({ calls: 0, totalTime: 0 });
    expect(stats('{"queries":[{"calls":1}],"queries":null}')).toEqual({ calls: 0, totalTime: 0 });
    expect(stats('{"queries":[{"calls":1}],"queries":{"calls":5}}')).toEqual({ calls: 0, totalTime: 0 });
    expect(stats('{"type":"pg_query_stats"}')).toEqual({ calls: 0, totalTime: 0 });
  });

  it('a string value that reads like a key is not one; a nested entry array is not an entry', () => {
    expect(stats('{"queries":[{"calls":5,"name":"calls","total_time":1},[{"calls":7}],{"text":"{\\"calls\\": 3}"}]}')).toEqual({
      calls: 5,
      totalTime: 1,
    });
  });
});
