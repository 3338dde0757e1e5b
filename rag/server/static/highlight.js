// Citation offsets count Unicode code points of the document text (Python string indices);
// JavaScript strings index UTF-16 code units. These pure functions bridge the two.

/** UTF-16 index of code point offset `cp` in `text` (clamped to the text's end). */
export function utf16Index(text, cp) {
  if (!Number.isInteger(cp) || cp < 0) throw new RangeError(`bad offset ${cp}`);
  let index = 0;
  for (let seen = 0; seen < cp && index < text.length; seen++) {
    const code = text.charCodeAt(index);
    index += code >= 0xd800 && code <= 0xdbff && index + 1 < text.length ? 2 : 1;
  }
  return index;
}

/** Number of code points in `text`. */
export function codePointLength(text) {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * Splits `text` into the parts before, inside and after the code point span [start, end).
 * Throws RangeError when the span does not fit the text (a stale citation must not highlight garbage).
 */
export function splitSpan(text, start, end) {
  const length = codePointLength(text);
  if (!(Number.isInteger(start) && Number.isInteger(end)) || start < 0 || end < start || end > length) {
    throw new RangeError(`span ${start}–${end} does not fit a text of ${length} characters`);
  }
  const a = utf16Index(text, start);
  const b = utf16Index(text, end);
  return { before: text.slice(0, a), mark: text.slice(a, b), after: text.slice(b) };
}

