import { describe, expect, it } from 'vitest';
import { mergeNotes, runFailures } from './run-suite';

describe('mergeNotes', () => {
  it('keeps a note every run printed as it is, once', () => {
    expect(mergeNotes([{ notes: ['pool 8'] }, { notes: ['pool 8'] }, { notes: ['pool 8'] }])).toEqual(['pool 8']);
  });

  it('names the runs of a note that not every run printed, in first-seen order', () => {
    const outputs = [
      { notes: ['pool 8', 'AOF rewrites: 2'] },
      { notes: ['pool 8', 'AOF rewrites: 1'] },
      { notes: ['pool 8', 'AOF rewrites: 1'] },
    ];
    expect(mergeNotes(outputs)).toEqual(['pool 8', 'run 1: AOF rewrites: 2', 'runs 2, 3: AOF rewrites: 1']);
  });

  it('counts a note repeated inside one run once, and a run without notes as not printing it', () => {
    expect(mergeNotes([{ notes: ['x', 'x'] }, {}])).toEqual(['run 1: x']);
  });

  it('leaves a single run unlabelled', () => {
    expect(mergeNotes([{ notes: ['audit: 0 lost'] }])).toEqual(['audit: 0 lost']);
  });
});

describe('runFailures', () => {
  it('names the run of each failure, and is empty when no run failed', () => {
    expect(runFailures([{}, { failures: [] }])).toEqual([]);
    expect(runFailures([{}, { failures: ['audit: 3 lost', 'queue did not drain'] }])).toEqual([
      'run 2: audit: 3 lost',
      'run 2: queue did not drain',
    ]);
  });
});
