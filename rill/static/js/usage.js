// Usage figures (GET /api/usage) made ready to show: one slot per UTC day from `since` to
// `until`, sums per model, and the words and numbers the Settings dialog's usage section shows.
// Pure: no DOM, no fetch.

export const USAGE_DAYS = 30;
const MAX_SLOTS = 366;  // the server's own limit on `days`
const DAY_MS = 86_400_000;

const count = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 });
const shortDate = new Intl.DateTimeFormat("en-US", { month: "short", day: "numeric", timeZone: "UTC" });
const weekday = new Intl.DateTimeFormat("en-US", { weekday: "short", timeZone: "UTC" });

// "2026-11-22" as milliseconds since the epoch at that UTC midnight; NaN if it is no such day.
function parseDay(day) {
  const match = typeof day === "string" && /^(\d{4})-(\d{2})-(\d{2})$/.exec(day);
  if (!match) return NaN;
  const [year, month, date] = match.slice(1).map(Number);
  const ms = Date.UTC(year, month - 1, date);
  return new Date(ms).toISOString().slice(0, 10) === day ? ms : NaN;  // no 2026-02-30
}

const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const number = (value) => (Number.isFinite(value) ? value : 0);

// A body whose shape is not the contract's is an error, said in words, not a broken chart.
function checkBody(body) {
  const since = parseDay(body?.since);
  const until = parseDay(body?.until);
  if (Number.isNaN(since) || Number.isNaN(until) || until < since || (until - since) / DAY_MS >= MAX_SLOTS
      || !Array.isArray(body.rows)) {
    throw new Error("The server's usage answer is not in the expected form.");
  }
  return { since, until };
}

// One slot per day from body.since to body.until, oldest first:
// {day, turns, prompt, completion, cost}. Days without usage are zeros (cost null); a day with
// several models sums them; rows outside the span are left out.
export function daySlots(body) {
  const { since, until } = checkBody(body);
  const slots = [];
  const byDay = new Map();
  for (let ms = since; ms <= until; ms += DAY_MS) {
    const slot = { day: isoDay(ms), turns: 0, prompt: 0, completion: 0, cost: null };
    slots.push(slot);
    byDay.set(slot.day, slot);
  }
  for (const row of body.rows) {
    const slot = byDay.get(row?.day);
    if (!slot) continue;
    slot.turns += number(row.turns);
    slot.prompt += number(row.prompt_tokens);
    slot.completion += number(row.completion_tokens);
    if (Number.isFinite(row.cost)) slot.cost = (slot.cost ?? 0) + row.cost;
  }
  return slots;
}

// Sums per model over the same days as the slots, most tokens first:
// {model, turns, prompt, completion, tokens, cost}; cost is null when no price is set for the model.
export function modelTotals(body) {
  checkBody(body);
  const models = new Map();
  for (const row of body.rows) {
    if (!(row?.day >= body.since && row.day <= body.until)) continue;
    const name = String(row?.model ?? "");
    let sum = models.get(name);
    if (!sum) models.set(name, (sum = { model: name, turns: 0, prompt: 0, completion: 0, tokens: 0, cost: null }));
    sum.turns += number(row.turns);
    sum.prompt += number(row.prompt_tokens);
    sum.completion += number(row.completion_tokens);
    sum.tokens = sum.prompt + sum.completion;
    if (Number.isFinite(row.cost)) sum.cost = (sum.cost ?? 0) + row.cost;
  }
  return [...models.values()].sort((a, b) => b.tokens - a.tokens || a.model.localeCompare(b.model));
}

export function formatCount(n) {
  return count.format(n);
}

// Dollars with enough decimals to show small sums: $0.0012, $0.000015, $1.25.
export function formatCost(cost) {
  if (!Number.isFinite(cost)) return "";
  if (cost === 0) return "$0.00";
  const decimals = Math.max(2, Math.min(8, 1 - Math.floor(Math.log10(Math.abs(cost)))));
  return `$${cost.toFixed(decimals)}`;
}

const plural = (n, word) => `${formatCount(n)} ${word}${n === 1 ? "" : "s"}`;

// "3 turns · 100 prompt tokens · 200 completion tokens · $0.0012" (cost only when priced).
export function totalsText(totals) {
  const parts = [
    plural(number(totals?.turns), "turn"),
    plural(number(totals?.prompt_tokens), "prompt token"),
    plural(number(totals?.completion_tokens), "completion token"),
  ];
  if (Number.isFinite(totals?.cost)) parts.push(formatCost(totals.cost));
  return parts.join(" · ");
}

// "Nov 22"
export function dayLabel(day) {
  return shortDate.format(parseDay(day));
}

// A bar's tooltip: "Sun 2026-11-22: 3 turns, 100 prompt + 200 completion tokens".
export function slotTitle(slot) {
  const when = `${weekday.format(parseDay(slot.day))} ${slot.day}`;
  if (!slot.turns && !slot.prompt && !slot.completion) return `${when}: no usage`;
  return `${when}: ${plural(slot.turns, "turn")}, ${formatCount(slot.prompt)} prompt + `
    + `${formatCount(slot.completion)} completion tokens`;
}

// The chart in one sentence, for screen readers (its aria-label).
export function chartSummary(slots) {
  const range = `${dayLabel(slots[0].day)} to ${dayLabel(slots.at(-1).day)}`;
  const used = slots.filter((s) => s.prompt + s.completion > 0);
  if (!used.length) return `Tokens per day, ${range}: no usage.`;
  const prompt = used.reduce((sum, s) => sum + s.prompt, 0);
  const completion = used.reduce((sum, s) => sum + s.completion, 0);
  const top = used.reduce((best, s) => (s.prompt + s.completion > best.prompt + best.completion ? s : best));
  return `Tokens per day, ${range}: ${formatCount(prompt)} prompt and ${formatCount(completion)} completion `
    + `tokens on ${plural(used.length, "day")}; most on ${dayLabel(top.day)} `
    + `(${formatCount(top.prompt)} prompt, ${formatCount(top.completion)} completion).`;
}

// The chart's top: the largest day rounded up to 1, 2 or 5 times a power of ten.
export function axisMax(slots) {
  const largest = Math.max(0, ...slots.map((s) => s.prompt + s.completion));
  if (largest <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(largest));
  return [1, 2, 5, 10].map((step) => step * power).find((top) => top >= largest);
}

export function formatCompact(n) {
  return compact.format(n);
}
