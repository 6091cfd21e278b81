import { describe, expect, it } from 'vitest';
import { CollectorNameSchema, hiddenFormatChar } from './protocol';

const refusal = (name: string) => {
  const result = CollectorNameSchema.safeParse(name);
  return result.success ? undefined : result.error.issues.map((issue) => issue.message).join('; ');
};

describe('CollectorNameSchema: format characters (Unicode Cf)', () => {
  it('takes the format characters that are part of the text: whole emoji, ZWNJ/ZWJ inside a Persian or Indic word', () => {
    for (const name of [
      'db-👨\u200d👩\u200d👧', // family: U+200D between the people
      'پایگاه می\u200cخواهم', // Persian: U+200C between ی and خ
      'क्\u200dष', // Devanagari: virama, U+200D, a letter
      'सर्\u200cवर', // Devanagari: virama, U+200C, a letter
      'ක්\u200dරම', // Sinhala: al-lakuna, U+200D (rakaaransaya)
      'pg 🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}', // flag of Scotland: tag characters U+E0067 … U+E007F
      '🧑🏽\u200d💻 ops', // skin tone and U+200D
      '1\ufe0f⃣ db',
      'ܫܠܡ\u200cܐ', // Syriac letters around U+200C
    ])
      expect([name, refusal(name)]).toEqual([name, undefined]);
  });

  it('refuses a format character that hides in or reorders a name, naming its code point and its position in code points', () => {
    for (const [name, found] of [
      ['prod\u200B-db', 'U+200B at character 5'],
      ['a\u202Eb', 'U+202E at character 2'],
      ['x\u00ADy', 'U+00AD at character 2'],
      ['a\uFEFFb', 'U+FEFF at character 2'],
      ['db\u2066x\u2069', 'U+2066 at character 3'],
      ['a\u200Eb', 'U+200E at character 2'],
      ['a\u061Cb', 'U+061C at character 2'],
      ['a\u2060b', 'U+2060 at character 2'],
      ['a\u2062b', 'U+2062 at character 2'],
      // ZWJ / ZWNJ at an end, next to a space or a hyphen, or between Latin letters
      ['\u200Dprod', 'U+200D at character 1'],
      ['prod\u200D', 'U+200D at character 5'],
      ['क्\u200D', 'U+200D at character 3'],
      ['क्\u200D ष', 'U+200D at character 3'],
      ['क्\u200D-ष', 'U+200D at character 3'],
      ['prod \u200Ddb', 'U+200D at character 6'],
      ['prod-\u200Cdb', 'U+200C at character 6'],
      ['pr\u200Cod', 'U+200C at character 3'],
      ['pr\u200Dod', 'U+200D at character 3'],
      ['می\u200C\u200Cخواهم', 'U+200C at character 3'],
      ['کم\u200Dی', 'U+200D at character 3'], // ZWJ between Arabic letters: not a CONTEXTJ case
      ['क\u200Dष', 'U+200D at character 2'], // no virama before it
      // not a whole RGI emoji: the ZWJ between two elephants, a tag sequence without its base
      ['🐘\u200D🐘', 'U+200D at character 2'],
      ['pg\u{E0067}\u{E0062}\u{E007F}', 'U+E0067 at character 3'],
      // positions count code points, not UTF-16 units
      ['𝔞𝔟\u200B', 'U+200B at character 3'],
      ['👨\u200d👩\u200d👧 x\u200By', 'U+200B at character 8'],
    ] as const)
      expect([name, refusal(name)]).toEqual([name, `must not contain invisible or formatting characters: ${found}`]);
  });

  it('names nothing when there is no format character', () => {
    for (const name of ['db-7.prod.internal', 'Продакшн база', '数据库 1', 'café ☕', 'pg 🐘'])
      expect(hiddenFormatChar(name)).toBeUndefined();
  });

  it('lists as viramas only characters of canonical combining class 9 (NFD orders them after class 7, before class 10)', () => {
    const virama = (c: string) =>
      `a${c}\u094D`.normalize('NFD') === `a${c}\u094D` && // not above 9
      `a\u094D${c}`.normalize('NFD') === `a\u094D${c}` && // not below 9
      `a\u05B0${c}`.normalize('NFD') !== `a\u05B0${c}`; // a non-starter below 10
    for (const c of ['\u094D', '\u0DCA', '\u17D2', '\u{11046}']) expect(virama(c)).toBe(true);
    for (const letter of ['क', 'ष', 'ی']) {
      for (const c of ['\u093C', '\u0941', '\u064E']) {
        // a nukta, a vowel sign, a fatha: not viramas, so no joiner after them unless a virama follows
        expect(virama(c)).toBe(false);
        expect(hiddenFormatChar(`${letter}${c}\u200D${letter}`)).toEqual({ codePoint: 'U+200D', position: 3 });
      }
    }
  });
});
